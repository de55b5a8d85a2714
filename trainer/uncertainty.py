"""Per-face uncertainty in the report: is a face the model is unsure about (a wide DEX age
distribution, a large ``age_std``) really predicted worse, and is the spread a usable interval?

- ``risk_coverage``: keep the fraction ``c`` of faces with the lowest std and take their MAE. If
  the std ranks faces by their error, MAE falls as the coverage shrinks; a std unrelated to the
  error leaves it flat.
- ``calibration``: the share of true ages inside ``predicted ± k·std``. For a Gaussian spread
  the shares would be 0.683 (k=1) and 0.954 (k=2); below that the model is overconfident.
Pure numpy on arrays, like trainer.metrics; ``section`` turns the numbers into the report's
section.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

STD = "age_std"  # the predictions column (and SavedModel output) holding the std
COVERAGES = (0.5, 0.8, 1.0)
SIGMAS = (1, 2)
GAUSSIAN_SHARE = {1: 0.6827, 2: 0.9545}  # P(|z| <= k) for a normal distribution
PLOT = "risk_coverage.png"


def _arrays(true, pred, std) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, p, s = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (true, pred, std))
    if not t.size == p.size == s.size:
        raise ValueError(f"true ages ({t.size}), predictions ({p.size}) and stds ({s.size}) "
                         "differ in length")
    if not all(np.all(np.isfinite(x)) for x in (t, p, s)) or np.any(s < 0):
        raise ValueError("true ages, predictions and stds must be finite (stds >= 0)")
    return t, p, s


def kept(count: int, coverage: float) -> int:
    """How many faces a coverage keeps: ceil(coverage * count), at least one of a non-empty set."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    return min(count, max(1, math.ceil(coverage * count - 1e-9))) if count else 0


def mae_by_confidence(true, pred, std) -> np.ndarray:
    """MAE of the k most confident faces (lowest std) for k = 1..N: the risk-coverage curve.

    Ties in std keep the input order (stable sort), so the curve is deterministic.
    """
    t, p, s = _arrays(true, pred, std)
    order = np.argsort(s, kind="stable")
    errors = np.abs(p - t)[order]
    return np.cumsum(errors) / np.arange(1, errors.size + 1)


def risk_coverage(true, pred, std, coverages=COVERAGES) -> pd.DataFrame:
    """One row per coverage: coverage, faces kept, the largest std kept, their MAE."""
    t, p, s = _arrays(true, pred, std)
    curve = mae_by_confidence(t, p, s)
    ranked = np.sort(s, kind="stable")
    rows = []
    for c in coverages:
        n = kept(t.size, c)
        rows.append({"coverage": float(c), "count": n,
                     "max_std": float(ranked[n - 1]) if n else math.nan,
                     "mae": float(curve[n - 1]) if n else math.nan})
    return pd.DataFrame(rows)


def calibration(true, pred, std, sigmas=SIGMAS) -> pd.DataFrame:
    """One row per k: the share of true ages within predicted ± k·std, beside a Gaussian's."""
    t, p, s = _arrays(true, pred, std)
    inside = np.abs(p - t)[None, :] <= np.asarray(sigmas, np.float64)[:, None] * s[None, :]
    shares = inside.mean(axis=1) if t.size else np.full(len(sigmas), math.nan)
    return pd.DataFrame({"interval": [f"±{k}σ" for k in sigmas],
                         "share": [float(x) for x in shares],
                         "gaussian": [GAUSSIAN_SHARE.get(k, math.nan) for k in sigmas]})


def uncertainty_metrics(df: pd.DataFrame) -> dict:
    """metrics.json's ``uncertainty``: risk-coverage rows, calibration rows, mean std and the
    relative MAE drop from 100% to 80% coverage (the goal's figure)."""
    rc = risk_coverage(df["true_age"], df["predicted_age"], df[STD])
    cal = calibration(df["true_age"], df["predicted_age"], df[STD])
    at = dict(zip(rc["coverage"], rc["mae"], strict=True))
    full, eighty = at.get(1.0), at.get(0.8)
    drop = 1.0 - eighty / full if full and eighty is not None and full > 0 else None
    return {"mean_std": float(df[STD].mean()),
            "risk_coverage": rc.to_dict(orient="records"),
            "calibration": cal.to_dict(orient="records"),
            "mae_drop_at_80": drop}


def section(result: dict, have_plot: bool):
    """The report's "Uncertainty" section from uncertainty_metrics' output."""
    from trainer import report

    drop = result.get("mae_drop_at_80")
    text = (f"Each face's std is the spread of its predicted age distribution (mean "
            f"{result['mean_std']:.2f} years). Keeping the most confident faces (lowest std): ")
    text += (f"MAE at 80% coverage is **{100 * drop:.1f}%** below MAE at 100%. "
             if drop is not None else "")
    text += "Calibration: the share of true ages within ±1σ / ±2σ of the prediction."
    return report.Section("Uncertainty (age std)", text,
                          [report.format_table(result["risk_coverage"]),
                           report.format_table(result["calibration"])],
                          [PLOT] if have_plot else [])
