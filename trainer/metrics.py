"""Age-estimation metrics: pure numpy/pandas, so the report, compare and the benchmark share them.

Conventions, fixed here once:
- errors are ``predicted - true`` (a positive bias means the model guesses too old);
- CS@k ("cumulative score") is the share of faces predicted within k years, ``|error| <= k``;
- age bands are right-open on the TRUE age: a 12.5-year-old belongs to 0-12 (ages are floats,
  so each band is [lo, next lo) rather than the inclusive integers its label shows).
Every function takes plain arrays or a predictions DataFrame (columns ``true_age``,
``predicted_age``, optionally ``blur`` and extra label columns) and returns plain Python numbers
or DataFrames; nothing here knows about TensorFlow or files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

# (label, lower bound inclusive). The upper bound is the next band's lower bound.
AGE_BANDS: tuple[tuple[str, float], ...] = (
    ("0-12", 0.0), ("13-19", 13.0), ("20-29", 20.0), ("30-39", 30.0), ("40-49", 40.0),
    ("50-59", 50.0), ("60+", 60.0),
)
BAND_LABELS = tuple(label for label, _ in AGE_BANDS)
CS_YEARS = 5
TRUE, PRED = "true_age", "predicted_age"


def _arrays(true, pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"true ages ({t.size}) and predictions ({p.size}) differ in length")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("true ages and predictions must be finite numbers (found NaN or inf)")
    return t, p


def summarize(true, pred, cs_years: int = CS_YEARS) -> dict:
    """MAE, RMSE, CS@k, mean signed error and count; NaN metrics when there are no rows."""
    t, p = _arrays(true, pred)
    key = f"cs@{cs_years}"
    if t.size == 0:
        return {"count": 0, "mae": math.nan, "rmse": math.nan, key: math.nan, "bias": math.nan}
    err = p - t
    return {
        "count": int(t.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        key: float(np.mean(np.abs(err) <= cs_years)),
        "bias": float(np.mean(err)),
    }


def age_band(ages) -> np.ndarray:
    """The band label of each true age (object array of strings from BAND_LABELS)."""
    a = np.asarray(ages, dtype=np.float64).reshape(-1)
    if np.any(a < 0):
        raise ValueError(f"negative age {a[a < 0][0]} cannot be placed in an age band")
    edges = np.array([lo for _, lo in AGE_BANDS])
    return np.array(BAND_LABELS, dtype=object)[np.searchsorted(edges, a, side="right") - 1]


def _grouped(df: pd.DataFrame, keys, order: Sequence | None, cs_years: int) -> pd.DataFrame:
    rows = []
    groups = dict(tuple(df.groupby(keys, sort=True, observed=True)))
    for name in (order if order is not None else groups):
        part = groups.get(name, df.iloc[:0])
        rows.append({"group": name, **summarize(part[TRUE], part[PRED], cs_years)})
    return pd.DataFrame(rows)


def by_band(df: pd.DataFrame, cs_years: int = CS_YEARS) -> pd.DataFrame:
    """One row per age band (all bands, in order; empty bands have count 0 and NaN metrics)."""
    _require(df, (TRUE, PRED))
    bands = pd.Series(age_band(df[TRUE]), index=df.index, name="band")
    return _grouped(df.assign(band=bands), "band", BAND_LABELS, cs_years)


def by_column(df: pd.DataFrame, column: str, cs_years: int = CS_YEARS) -> pd.DataFrame:
    """One row per value of a label column (e.g. gender); empty strings are reported as '?'."""
    _require(df, (TRUE, PRED, column))
    values = df[column].astype(str).replace({"": "?", "nan": "?"})
    return _grouped(df.assign(**{column: values}), column, None, cs_years)


def by_quantile(df: pd.DataFrame, column: str = "blur", quantiles: int = 4,
                cs_years: int = CS_YEARS) -> pd.DataFrame:
    """Rows per quantile bin of a numeric column (Q1 = lowest), with each bin's value range.

    For ``blur`` (variance of the Laplacian) LOW means BLURRY, so Q1 holds the blurriest faces.
    Ties at bin edges can leave fewer, unequal bins; ``duplicates='drop'`` keeps that honest
    rather than failing on data with many identical scores.
    """
    _require(df, (TRUE, PRED, column))
    if quantiles < 1:
        raise ValueError(f"quantiles must be >= 1, got {quantiles}")
    values = pd.to_numeric(df[column], errors="coerce")
    if values.isna().all():
        return pd.DataFrame(columns=["group", "low", "high", "count", "mae", "rmse",
                                     f"cs@{cs_years}", "bias"])
    if values.nunique() < 2:  # one score for every face (e.g. not computed): a single bin
        bins = pd.Series(np.where(values.notna(), 0, np.nan), index=df.index)
    else:
        bins = pd.qcut(values, q=quantiles, labels=False, duplicates="drop")
    out = _grouped(df.assign(_bin=bins), "_bin", None, cs_years)
    limits = values.groupby(bins).agg(["min", "max"])
    out.insert(1, "low", [float(limits.loc[g, "min"]) for g in out["group"]])
    out.insert(2, "high", [float(limits.loc[g, "max"]) for g in out["group"]])
    out["group"] = [f"Q{int(g) + 1}" for g in out["group"]]
    return out


# Bands of the face detector's score (records of preprocessing --face=detect|align). MTCNN's
# last stage keeps faces above 0.8, and most real faces score above 0.99.
FACE_SCORE = "face_score"
FACE_SCORE_EDGES = (0.9, 0.99, 0.999)


def by_face_score(df: pd.DataFrame, cs_years: int = CS_YEARS) -> pd.DataFrame:
    """One row per band of the detector's score (all bands, in order; empty ones count 0)."""
    _require(df, (TRUE, PRED, FACE_SCORE))
    edges = FACE_SCORE_EDGES
    labels = [f"< {edges[0]:g}", *(f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:],
                                                                       strict=True)),
              f">= {edges[-1]:g}"]
    index = np.searchsorted(np.asarray(edges), df[FACE_SCORE].to_numpy(dtype=float), "right")
    bands = pd.Series(np.asarray(labels, dtype=object)[index], index=df.index)
    return _grouped(df.assign(_score=bands), "_score", labels, cs_years)


def bias_by_age(df: pd.DataFrame, width: int = 5) -> pd.DataFrame:
    """Mean signed error, MAE and count per ``width``-year bin of true age (for the bias plot)."""
    _require(df, (TRUE, PRED))
    if width < 1:
        raise ValueError(f"bin width must be >= 1 year, got {width}")
    start = (np.floor(df[TRUE].to_numpy(dtype=float) / width) * width).astype(int)
    err = df[PRED].to_numpy(dtype=float) - df[TRUE].to_numpy(dtype=float)
    frame = pd.DataFrame({"age_start": start, "err": err, "abs": np.abs(err)})
    out = frame.groupby("age_start").agg(bias=("err", "mean"), mae=("abs", "mean"),
                                         count=("err", "size"))
    return out.reset_index()


def evaluation_metrics(df: pd.DataFrame, extra_columns: Sequence[str] = (),
                       blur_quantiles: int = 4, cs_years: int = CS_YEARS) -> dict:
    """Everything metrics.json holds: overall, per band, per extra column, per blur quantile.

    Also the ratio of the 60+ band's MAE to the overall MAE, the figure the study asks about
    ("why are ages 60+ worse"), so compare and the benchmark need not recompute it.
    """
    overall = summarize(df[TRUE], df[PRED], cs_years)
    bands = by_band(df, cs_years)
    old = bands.loc[bands["group"] == "60+", "mae"].iloc[0]
    result = {
        "overall": overall,
        "by_band": _records(bands),
        "by_column": {c: _records(by_column(df, c, cs_years)) for c in extra_columns
                      if c in df.columns},
        "old_to_overall_mae_ratio": _num(old / overall["mae"]) if overall["mae"] else None,
    }
    if "blur" in df.columns:
        result["by_blur_quantile"] = _records(by_quantile(df, "blur", blur_quantiles, cs_years))
    if FACE_SCORE in df.columns:
        result["by_face_score"] = _records(by_face_score(df, cs_years))
    return result


def _num(x):
    """JSON-safe number: NaN (an empty group) becomes None, numpy scalars become Python ones."""
    if x is None:
        return None
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    return x


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _num(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"predictions lack column(s) {missing}; have {list(df.columns)}")
