"""Per-age sample weights against label imbalance, from the train split's age histogram.

Pure numpy; a table indexed by floor(age) (``data.build_dataset``'s ``age_weights``). ``none``:
ones. ``inverse_frequency``: 1 / count(age). ``lds``: label-distribution smoothing (Yang et al.
2021): the histogram is smoothed with a Gaussian first, so a rare age with populated neighbours
is not treated as rare (a 31-year-old face informs about 30), then inverted. Weights are clipped
to ``max_ratio`` times the commonest age's (a few 90-year-olds must not dominate the gradient) and
normalised to mean 1 over the training examples, so the loss keeps its scale.
"""

from __future__ import annotations

import numpy as np

METHODS = ("none", "inverse_frequency", "lds")


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ValueError(f"LDS kernel needs an odd size >= 1 and sigma > 0, got size={size}, "
                         f"sigma={sigma}")
    x = np.arange(size) - size // 2
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def smooth_histogram(histogram, kernel_size: int = 9, sigma: float = 2.0) -> np.ndarray:
    """The histogram convolved with a normalised Gaussian kernel (same length, zero padded).

    The centred slice of the full convolution rather than np.convolve's mode="same", which
    returns max(len(histogram), kernel_size) values: a kernel longer than the histogram (a small
    --max_age) is still a well-defined smoothing, since sigma sets its width and the extra taps
    fall on the zero padding, so it is not an error.
    """
    counts = np.asarray(histogram, dtype=np.float64)
    full = np.convolve(counts, gaussian_kernel(kernel_size, sigma), mode="full")
    return full[kernel_size // 2:kernel_size // 2 + counts.size]


def age_weights(histogram, method: str = "none", *, kernel_size: int = 9, sigma: float = 2.0,
                max_ratio: float = 10.0) -> np.ndarray:
    """float32 weight per integer age (len(histogram)), mean 1 over the training examples."""
    counts = np.asarray(histogram, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0) or not np.all(
            np.isfinite(counts)):
        raise ValueError("age histogram must be a non-empty 1-D list of non-negative counts")
    if counts.sum() <= 0:
        raise ValueError("age histogram is empty (no training examples)")
    if method not in METHODS:
        raise ValueError(f"--sample_weighting={method!r}: must be one of {', '.join(METHODS)}")
    if max_ratio < 1:
        raise ValueError(f"--max_weight_ratio={max_ratio}: must be >= 1")
    if method == "none":
        return np.ones(counts.size, np.float32)
    density = counts if method == "inverse_frequency" else smooth_histogram(
        counts, kernel_size, sigma)
    present = density > 0
    weights = np.zeros_like(density)
    weights[present] = 1.0 / density[present]
    # Clip relative to the commonest age (smallest weight); ages with no density at all get the
    # cap (no training example has them, but a table entry must be finite).
    floor = weights[present].min()
    weights = np.where(present, np.minimum(weights, floor * max_ratio), floor * max_ratio)
    # Normalise to mean 1 over the examples: sum(counts * w) == sum(counts).
    weights *= counts.sum() / np.sum(counts * weights)
    return weights.astype(np.float32)
