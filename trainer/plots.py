"""The report's pictures, each a pure function from numbers to PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: no global figure state,
no GUI backend to pick (Figure's own canvas is Agg), safe to call from tests and from several
threads, and nothing to close. Returning bytes keeps files out of this module: the report embeds
them as base64 in the HTML and writes them next to the Markdown.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from contract.stats import Stats
from trainer import metrics

_DPI = 100
_TRAIN, _VAL = "#1f77b4", "#d62728"


def _png(fig: Figure) -> bytes:
    # Run names, labels and file names are the user's text, and matplotlib would read a "$" in
    # them as mathtext (crashing on "a$^$b", mangling "$5 to $10"): every text is shown as typed.
    for text in fig.findobj(Text):
        text.set_parse_math(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float = 6.4, height: float = 4.2):
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def predicted_vs_true(df: pd.DataFrame, cs_years: int = metrics.CS_YEARS) -> bytes:
    """Scatter of predicted vs true age, the identity line and the +-cs_years corridor."""
    fig, ax = _figure(5.6, 5.2)
    t = df[metrics.TRUE].to_numpy(float)
    p = df[metrics.PRED].to_numpy(float)
    hi = float(max(t.max(initial=1), p.max(initial=1))) * 1.05
    grid = np.array([0.0, hi])
    ax.fill_between(grid, grid - cs_years, grid + cs_years, color="0.85",
                    label=f"within {cs_years} years")
    ax.plot(grid, grid, color="0.3", lw=1, label="perfect")
    # Small, translucent points: thousands of faces overlap, density is what matters.
    ax.scatter(t, p, s=6, alpha=0.35 if len(t) > 500 else 0.8, color=_TRAIN, lw=0)
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="true age (years)",
           ylabel="predicted age (years)", title=f"Predicted vs true age (n={len(t)})")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def error_by_band(bands: pd.DataFrame, overall_mae: float) -> bytes:
    """MAE per age band (the rows of metrics.by_band), face counts on the bars."""
    fig, ax = _figure()
    x = np.arange(len(bands))
    mae = bands["mae"].to_numpy(float)
    bars = ax.bar(x, np.nan_to_num(mae), color=_TRAIN)
    for bar, n in zip(bars, bands["count"], strict=True):
        ax.annotate(f"n={int(n)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.axhline(overall_mae, color=_VAL, ls="--", lw=1, label=f"overall {overall_mae:.2f}")
    ax.set_xticks(x, bands["group"])
    ax.set(xlabel="true age band", ylabel="MAE (years)", title="Error by age band")
    ax.legend(fontsize=8)
    return _png(fig)


def bias_by_age(bias: pd.DataFrame, width: int = 5) -> bytes:
    """Mean signed error per true-age bin (metrics.bias_by_age): > 0 means guessed too old."""
    fig, ax = _figure()
    colors = np.where(bias["bias"] >= 0, _VAL, _TRAIN)
    ax.bar(bias["age_start"] + width / 2, bias["bias"], width=width * 0.9, color=colors)
    ax.axhline(0, color="0.3", lw=1)
    ax.set(xlabel="true age (years)", ylabel="mean predicted - true (years)",
           title="Bias by age (red: too old, blue: too young)")
    return _png(fig)


def error_vs_quantile(quantiles: pd.DataFrame, column: str = "blur") -> bytes:
    """MAE per quantile bin of a quality score (metrics.by_quantile), value range on each tick."""
    fig, ax = _figure()
    x = np.arange(len(quantiles))
    ax.bar(x, np.nan_to_num(quantiles["mae"].to_numpy(float)), color=_TRAIN)
    labels = [f"{g}\n{lo:.0f}-{hi:.0f}\nn={int(n)}" for g, lo, hi, n in zip(
        quantiles["group"], quantiles["low"], quantiles["high"], quantiles["count"],
        strict=True)]
    ax.set_xticks(x, labels, fontsize=8)
    note = " (Q1 = blurriest)" if column == "blur" else ""
    ax.set(ylabel="MAE (years)", xlabel=f"{column} quantile{note}",
           title=f"Error vs {column} score")
    return _png(fig)


def age_histograms(stats: Stats, bin_years: int = 5) -> bytes:
    """Age distribution per split from stats.json's per-year histograms, as shares per bin.

    Shares rather than counts so a 10% test split is comparable with the train split; the counts
    are in the legend.
    """
    fig, ax = _figure()
    oldest = 0
    for split, info in stats.splits.items():
        hist = np.asarray(info.age_histogram, dtype=float)
        if hist.sum() <= 0:
            continue
        pad = (-len(hist)) % bin_years
        binned = np.pad(hist, (0, pad)).reshape(-1, bin_years).sum(axis=1)
        starts = np.arange(len(binned)) * bin_years
        oldest = max(oldest, int(np.flatnonzero(hist)[-1]))
        ax.step(starts, binned / binned.sum(), where="post", lw=1.5,
                label=f"{split} (n={int(hist.sum())})")
    # Stop the axis just past the oldest face instead of at stats.json's max_age (often 120).
    ax.set_xlim(0, (oldest // bin_years + 2) * bin_years)
    ax.set(xlabel=f"age ({bin_years}-year bins)", ylabel="share of split",
           title="Age distribution per split")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _png(fig)


def _stage_edges(history: pd.DataFrame) -> list[float]:
    """Epochs where the training stage changes (e.g. head-only -> fine-tune)."""
    if "stage" not in history.columns:
        return []
    stage = history["stage"].astype(str).to_numpy()
    epochs = history["epoch"].to_numpy(float)
    return [float(epochs[i]) - 0.5 for i in range(1, len(stage)) if stage[i] != stage[i - 1]]


def learning_curves(history: pd.DataFrame) -> bytes:
    """Train vs validation MAE per epoch from history.csv; dotted lines mark stage changes.

    Note the train MAE is the running mean over the epoch with augmentation and dropout on,
    while validation is measured in inference mode at the epoch's end.
    """
    fig, ax = _figure()
    ax.plot(history["epoch"], history["mae"], "o-", color=_TRAIN, ms=3, label="train MAE")
    if "val_mae" in history.columns and history["val_mae"].notna().any():
        ax.plot(history["epoch"], history["val_mae"], "o-", color=_VAL, ms=3,
                label="validation MAE")
    for edge in _stage_edges(history):
        ax.axvline(edge, color="0.5", ls=":", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="MAE (years)", title="Learning curves")
    ax.legend(fontsize=8)
    return _png(fig)


def worst_gallery(images: Sequence[np.ndarray], rows: pd.DataFrame, columns: int = 6) -> bytes:
    """Grid of the worst-predicted faces, each titled with its true and predicted age.

    ``rows`` holds ``true_age``/``predicted_age`` (and optionally ``file``) for ``images`` in the
    same order; images are HxWx3 arrays in 0..255.
    """
    n = len(images)
    if n != len(rows):
        raise ValueError(f"{n} gallery images but {len(rows)} prediction rows")
    cols = max(1, min(columns, n))
    nrows = max(1, -(-n // cols))
    fig = Figure(figsize=(1.9 * cols, 2.15 * nrows))
    for i, (image, (_, row)) in enumerate(zip(images, rows.iterrows(), strict=True)):
        ax = fig.add_subplot(nrows, cols, i + 1)
        ax.imshow(np.clip(np.asarray(image, dtype=float), 0, 255).astype(np.uint8))
        ax.set_title(f"true {row[metrics.TRUE]:.0f}  pred {row[metrics.PRED]:.1f}", fontsize=8)
        ax.axis("off")
    if n == 0:
        fig.add_subplot().text(0.5, 0.5, "no predictions", ha="center", va="center")
    fig.suptitle("Worst predictions", fontsize=10)
    return _png(fig)


def compare_learning_curves(histories: Mapping[str, pd.DataFrame]) -> bytes:
    """Validation MAE (solid) and train MAE (faint dashed) per epoch, one colour per run."""
    fig, ax = _figure(7.2, 4.6)
    colors = _colors(len(histories))
    for color, (name, history) in zip(colors, histories.items(), strict=True):
        if "val_mae" in history.columns and history["val_mae"].notna().any():
            ax.plot(history["epoch"], history["val_mae"], "-", color=color, lw=1.6, label=name)
        if "mae" in history.columns:
            ax.plot(history["epoch"], history["mae"], "--", color=color, lw=1, alpha=0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="MAE (years)",
           title="Validation MAE per epoch (dashed: train)")
    if histories:
        ax.legend(fontsize=8)
    return _png(fig)


def compare_bands(band_mae: pd.DataFrame) -> bytes:
    """Grouped bars: MAE per age band (index) for each run (columns)."""
    fig, ax = _figure(7.2, 4.6)
    runs = list(band_mae.columns)
    x = np.arange(len(band_mae.index))
    width = 0.8 / max(1, len(runs))
    for i, (color, run) in enumerate(zip(_colors(len(runs)), runs, strict=True)):
        ax.bar(x + (i - (len(runs) - 1) / 2) * width,
               np.nan_to_num(band_mae[run].to_numpy(float)), width, color=color, label=run)
    ax.set_xticks(x, band_mae.index)
    ax.set(xlabel="true age band", ylabel="MAE (years)", title="Error by age band per run")
    if runs:
        ax.legend(fontsize=8)
    return _png(fig)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def risk_coverage(curve: np.ndarray, points: pd.DataFrame) -> bytes:
    """MAE of the most confident faces against the share kept (trainer.uncertainty): the
    curve for every count, the report's coverages marked, MAE at 100% as the reference line."""
    fig, ax = _figure()
    n = len(curve)
    ax.plot(np.arange(1, n + 1) / max(n, 1), curve, color=_TRAIN, lw=1.5,
            label="kept: lowest std first")
    ax.scatter(points["coverage"], points["mae"], color=_VAL, zorder=3)
    for c, mae in zip(points["coverage"], points["mae"], strict=True):
        ax.annotate(f"{100 * c:.0f}%: {mae:.2f}", (c, mae), textcoords="offset points",
                    xytext=(-10, 8), fontsize=8)
    if n:
        ax.axhline(curve[-1], color="0.5", ls="--", lw=1, label=f"all faces {curve[-1]:.2f}")
    ax.set(xlim=(0, 1.02), xlabel="coverage (share of faces kept, most confident first)",
           ylabel="MAE of the kept faces (years)", title="Risk-coverage (age std)")
    ax.legend(fontsize=8)
    return _png(fig)
