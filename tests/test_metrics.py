"""trainer.metrics against values worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from trainer import metrics


def test_summarize_hand_computed():
    # errors (pred - true): +2, -6, 0, +4  ->  |e| = 2, 6, 0, 4
    got = metrics.summarize([10, 30, 50, 70], [12, 24, 50, 74])
    assert got["count"] == 4
    assert got["mae"] == pytest.approx(3.0)  # (2+6+0+4)/4
    assert got["rmse"] == pytest.approx(math.sqrt(14.0))  # (4+36+0+16)/4 = 14
    assert got["cs@5"] == pytest.approx(0.75)  # 6 is the only miss
    assert got["bias"] == pytest.approx(0.0)  # (2-6+0+4)/4


def test_cs_threshold_is_inclusive_and_configurable():
    got = metrics.summarize([20, 20, 20], [25, 26, 17], cs_years=5)
    assert got["cs@5"] == pytest.approx(2 / 3)  # an error of exactly 5 years counts
    assert metrics.summarize([20], [23], cs_years=2)["cs@2"] == 0.0


def test_summarize_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.summarize([1, 2], [1])
    with pytest.raises(ValueError, match="finite"):
        metrics.summarize([1, np.nan], [1, 2])
    empty = metrics.summarize([], [])
    assert empty["count"] == 0 and math.isnan(empty["mae"])


def test_age_band_edges_are_right_open():
    ages = [0, 12, 12.9, 13, 19.5, 20, 29, 30, 45, 59.99, 60, 101]
    assert list(metrics.age_band(ages)) == [
        "0-12", "0-12", "0-12", "13-19", "13-19", "20-29", "20-29", "30-39", "40-49",
        "50-59", "60+", "60+"]
    with pytest.raises(ValueError, match="negative age"):
        metrics.age_band([-1])


def _frame():
    return pd.DataFrame({
        "true_age": [5, 8, 25, 27, 65, 80],
        "predicted_age": [7, 8, 20, 27, 55, 74],  # errors +2, 0, -5, 0, -10, -6
        "blur": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        "gender": ["0", "1", "0", "1", "0", ""],
    })


def test_by_band_lists_every_band_in_order_with_hand_values():
    bands = metrics.by_band(_frame()).set_index("group")
    assert list(bands.index) == list(metrics.BAND_LABELS)
    assert bands.loc["0-12", "mae"] == pytest.approx(1.0)
    assert bands.loc["0-12", "bias"] == pytest.approx(1.0)
    assert bands.loc["20-29", "cs@5"] == pytest.approx(1.0)  # |-5| <= 5 and 0
    assert bands.loc["60+", "mae"] == pytest.approx(8.0)
    assert bands.loc["60+", "rmse"] == pytest.approx(math.sqrt((100 + 36) / 2))
    assert bands.loc["30-39", "count"] == 0 and math.isnan(bands.loc["30-39", "mae"])


def test_by_column_groups_and_marks_missing_values():
    g = metrics.by_column(_frame(), "gender").set_index("group")
    assert g.loc["0", "count"] == 3 and g.loc["0", "mae"] == pytest.approx((2 + 5 + 10) / 3)
    assert g.loc["1", "mae"] == pytest.approx(0.0)
    assert g.loc["?", "mae"] == pytest.approx(6.0)
    with pytest.raises(KeyError, match="race"):
        metrics.by_column(_frame(), "race")


def test_by_quantile_splits_blur_low_to_high():
    q = metrics.by_quantile(_frame(), "blur", quantiles=2)
    assert list(q["group"]) == ["Q1", "Q2"]
    assert list(q["count"]) == [3, 3]
    assert q.loc[0, "low"] == 10.0 and q.loc[0, "high"] == 30.0
    assert q.loc[0, "mae"] == pytest.approx(7 / 3)  # 2, 0, 5
    assert q.loc[1, "mae"] == pytest.approx(16 / 3)  # 0, 10, 6


def test_by_quantile_with_one_score_for_every_face():
    q = metrics.by_quantile(_frame().assign(blur=100.0), "blur", quantiles=4)
    assert list(q["group"]) == ["Q1"] and q.loc[0, "count"] == 6
    assert q.loc[0, "low"] == q.loc[0, "high"] == 100.0


def test_bias_by_age_bins():
    b = metrics.bias_by_age(_frame(), width=10).set_index("age_start")
    assert list(b.index) == [0, 20, 60, 80]
    assert b.loc[0, "bias"] == pytest.approx(1.0)
    assert b.loc[20, "bias"] == pytest.approx(-2.5)
    assert b.loc[60, "count"] == 1


def test_evaluation_metrics_is_json_ready():
    import json

    m = metrics.evaluation_metrics(_frame(), extra_columns=("gender", "absent"), blur_quantiles=3)
    json.dumps(m, allow_nan=False)  # NaN for empty bands must have become null
    assert m["overall"]["mae"] == pytest.approx(23 / 6)
    assert m["old_to_overall_mae_ratio"] == pytest.approx(8.0 / (23 / 6))
    assert set(m["by_column"]) == {"gender"}
    assert len(m["by_blur_quantile"]) == 3
    assert [r["group"] for r in m["by_band"]] == list(metrics.BAND_LABELS)
