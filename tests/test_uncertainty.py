"""Per-face uncertainty: the DEX std, risk-coverage and calibration on arrays worked by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from trainer import plots, uncertainty
from trainer.model import age_std

# errors |pred - true| = 1, 4, 0, 10, 2; stds 1, 3, 0.5, 8, 2.
TRUE = [10, 20, 30, 40, 50]
PRED = [11, 24, 30, 50, 48]
STD = [1, 3, 0.5, 8, 2]
# Most confident first: std 0.5 (error 0), 1 (1), 2 (2), 3 (4), 8 (10); cumulative sums
# 0, 1, 3, 7, 17 over 1..5 faces.
CURVE = [0.0, 0.5, 1.0, 1.75, 3.4]


def test_age_std_is_the_spread_of_the_distribution():
    probs = np.zeros((3, 21), np.float32)
    probs[0, 7] = 1.0  # certain: no spread
    probs[1, [10, 20]] = 0.5  # two ages 10 years apart: std 5
    probs[2, [0, 1, 2]] = [0.25, 0.5, 0.25]  # variance 0.25 + 0.25 = 0.5
    np.testing.assert_allclose(age_std(probs, "dex").numpy(), [0.0, 5.0, math.sqrt(0.5)],
                               atol=1e-6)
    with pytest.raises(ValueError, match="only the dex head"):
        age_std(probs, "regression")


def test_risk_coverage_by_hand():
    np.testing.assert_allclose(uncertainty.mae_by_confidence(TRUE, PRED, STD), CURVE)
    rc = uncertainty.risk_coverage(TRUE, PRED, STD)
    # 50% of 5 keeps ceil(2.5) = 3 faces, 80% keeps 4, 100% all 5.
    assert rc["count"].tolist() == [3, 4, 5]
    assert rc["max_std"].tolist() == [2.0, 3.0, 8.0]
    np.testing.assert_allclose(rc["mae"], [1.0, 1.75, 3.4])


def test_ties_keep_the_input_order():
    # Equal stds: the first face (error 6) is kept before the second (error 0).
    np.testing.assert_allclose(uncertainty.mae_by_confidence([0, 0], [6, 0], [1, 1]), [6, 3])


def test_kept_counts():
    assert uncertainty.kept(10, 0.8) == 8  # 0.8 * 10 is not rounded up to 9
    assert uncertainty.kept(3, 0.5) == 2
    assert uncertainty.kept(1, 0.01) == 1
    assert uncertainty.kept(0, 0.5) == 0
    with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\]"):
        uncertainty.kept(10, 0.0)


def test_calibration_by_hand():
    cal = uncertainty.calibration(TRUE, PRED, STD)
    # Within 1 std: errors 1<=1, 0<=0.5, 2<=2 (the 4 and 10 are not): 3 of 5.
    # Within 2 stds: 4<=6 and 10<=16 join: all 5.
    assert cal["interval"].tolist() == ["±1σ", "±2σ"]
    np.testing.assert_allclose(cal["share"], [0.6, 1.0])
    np.testing.assert_allclose(cal["gaussian"], [0.6827, 0.9545])


def test_uncertainty_metrics_give_the_goal_figure():
    df = pd.DataFrame({"true_age": TRUE, "predicted_age": PRED, "age_std": STD})
    result = uncertainty.uncertainty_metrics(df)
    assert result["mae_drop_at_80"] == pytest.approx(1 - 1.75 / 3.4)
    assert result["mean_std"] == pytest.approx(14.5 / 5)
    assert [r["count"] for r in result["risk_coverage"]] == [3, 4, 5]
    section = uncertainty.section(result, have_plot=True)
    assert "48.5%" in section.text and section.images == [uncertainty.PLOT]
    png = plots.risk_coverage(np.array(CURVE), pd.DataFrame(result["risk_coverage"]))
    assert png.startswith(b"\x89PNG")


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"true ages \(2\), predictions \(2\) and stds \(1\)"):
        uncertainty.risk_coverage([1, 2], [1, 2], [1])
    with pytest.raises(ValueError, match="stds >= 0"):
        uncertainty.calibration([1], [1], [-1])
    with pytest.raises(ValueError, match="finite"):
        uncertainty.mae_by_confidence([1], [np.nan], [1])
