"""trainer.report and trainer.plots: files, embedded PNGs, numbers in the Markdown."""

import base64
import re

import numpy as np
import pandas as pd
import pytest

from contract.stats import Stats
from trainer import metrics, plots, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _predictions(n=300, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.uniform(1, 90, n).round()
    pred = true + rng.normal(0, 4, n) + np.where(true >= 60, -6, 0)  # old faces guessed young
    return pd.DataFrame({
        "id": [f"id{i}" for i in range(n)], "file": [f"{i}.jpg" for i in range(n)],
        "true_age": true, "predicted_age": pred, "blur": rng.gamma(2.0, 100.0, n),
        "gender": rng.choice(["0", "1", ""], n),
    })


def _stats():
    hist = np.zeros(121, int)
    hist[20:40] = 10
    return {"image_size": 32, "extra_columns": ["gender"], "splits": {
        "train": {"count": int(hist.sum()), "age_histogram": hist.tolist()},
        "validation": {"count": 20, "age_histogram": (hist // 10).tolist()},
        "test": {"count": 0, "age_histogram": [0] * 121}}}


def _history():
    return pd.DataFrame({"epoch": range(6), "stage": ["head"] * 2 + ["finetune"] * 4,
                         "loss": np.linspace(9, 3, 6), "mae": np.linspace(15, 4, 6),
                         "val_mae": np.linspace(16, 6, 6), "val_loss": np.linspace(9, 4, 6),
                         "lr": [1e-3] * 6})


def _full_report(tmp_path):
    df = _predictions()
    evaluation = metrics.evaluation_metrics(df, extra_columns=["gender"])
    worst = df.assign(err=(df.predicted_age - df.true_age).abs()).nlargest(8, "err")
    images = [np.full((32, 32, 3), 30 * i, np.uint8) for i in range(len(worst))]
    pngs = report.build_plots(df, evaluation, stats=Stats.from_dict(_stats()), history=_history(),
                              gallery=(images, worst))
    sections = report.evaluation_sections(evaluation, list(pngs))
    paths = report.write_report(str(tmp_path), title="Test report",
                                info={"split": "test", "model": "tiny"}, sections=sections,
                                pngs=pngs)
    return evaluation, pngs, paths


def test_report_files_embed_pngs_and_hold_numbers(tmp_path):
    evaluation, pngs, paths = _full_report(tmp_path)
    assert set(pngs) == {"predicted_vs_true.png", "error_by_band.png", "bias_by_age.png",
                         "error_vs_blur.png", "age_histograms.png", "learning_curves.png",
                         "worst_predictions.png"}
    for name, data in pngs.items():
        assert data.startswith(PNG_MAGIC), name
        assert (tmp_path / "plots" / name).read_bytes() == data

    page = (tmp_path / "report.html").read_text()
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(pngs.values())

    md = (tmp_path / "report.md").read_text()
    overall = evaluation["overall"]
    assert f"{overall['mae']:.2f}" in md and f"{overall['cs@5']:.3f}" in md
    old = next(r for r in evaluation["by_band"] if r["group"] == "60+")
    assert f"| 60+ | {old['count']} | {old['mae']:.2f} |" in md
    assert "## By gender" in md and "## By blur quantile" in md
    for name in pngs:
        assert f"(plots/{name})" in md
    assert paths == {"html": f"{tmp_path}/report.html", "markdown": f"{tmp_path}/report.md"}


def test_report_without_optional_inputs(tmp_path):
    df = _predictions(20).drop(columns=["blur", "gender"])
    evaluation = metrics.evaluation_metrics(df)
    pngs = report.build_plots(df, evaluation)
    assert set(pngs) == {"predicted_vs_true.png", "error_by_band.png", "bias_by_age.png"}
    sections = report.evaluation_sections(evaluation, list(pngs))
    report.write_report(str(tmp_path), title="t", info={}, sections=sections, pngs=pngs)
    assert "By blur" not in (tmp_path / "report.md").read_text()


def test_sections_must_reference_drawn_plots(tmp_path):
    sections = [report.Section("x", images=["missing.png"])]
    with pytest.raises(KeyError, match="missing.png"):
        report.write_report(str(tmp_path), title="t", info={}, sections=sections, pngs={})


def test_gallery_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="2 gallery images but 1"):
        plots.worst_gallery([np.zeros((4, 4, 3))] * 2, _predictions(1))


def test_compare_plots_render():
    h = _history()
    assert plots.compare_learning_curves({"a": h, "b": h.assign(val_mae=h.val_mae + 1)}
                                         ).startswith(PNG_MAGIC)
    bands = pd.DataFrame({"a": [3.0, 4.0], "b": [5.0, np.nan]}, index=["0-12", "60+"])
    assert plots.compare_bands(bands).startswith(PNG_MAGIC)
