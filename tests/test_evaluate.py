"""trainer.evaluate end to end: records written with schema.encode, a tiny model from export."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from fixed_models import mean_colour_model
from PIL import Image

from contract import schema
from contract.framing import Framing
from trainer import evaluate, export

SIZE = 32
N_TEST = 23  # not a multiple of the batch size: the last, short batch must count too


def _jpeg(rgb):
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[:, : SIZE // 2] = rgb  # left half coloured, right half black: flips change the image
    buf = io.BytesIO()
    # 4:4:4 chroma and a block-aligned edge: each 8x8 block is flat, so decoding is exact.
    Image.fromarray(img).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _write_data(root, n_test=N_TEST, seed=0):
    """A DATA_DIR as preprocessing.run writes it: shards + stats.json (test split only here)."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, n_test).astype(float)
    paths = [root / schema.shard_name("test", i, 2) for i in range(2)]
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    for i, age in enumerate(ages):
        record = {schema.IMAGE: _jpeg(rng.integers(0, 256, 3)), schema.HEIGHT: SIZE,
                  schema.WIDTH: SIZE, schema.ORIGINAL_HEIGHT: 64, schema.ORIGINAL_WIDTH: 64,
                  schema.FILENAME: f"face_{i}.jpg", schema.AGE: age, schema.ID: f"id{i:03d}",
                  schema.BLUR: float(10 * i), schema.BRIGHTNESS: 100.0,
                  "extra": {"gender": str(i % 2)}}
        writers[i % 2].write(schema.encode(record, ["gender"]))
    for w in writers:
        w.close()
    hist = np.bincount(ages.astype(int), minlength=121).tolist()
    stats = {"image_size": SIZE, "extra_columns": ["gender"], "max_age": 120,
             "splits": {"test": {"count": n_test, "num_shards": 2, "age_histogram": hist}}}
    (root / schema.STATS_FILE).write_text(json.dumps(stats))
    return ages


def _left_half_model():
    return mean_colour_model(SIZE, left_half=True)


def _export(model_dir):
    export.export_saved_model(_left_half_model(), str(model_dir / "saved_model"), Framing(SIZE),
                              "regression", max_age=120)
    pd.DataFrame({"epoch": [0, 1, 2], "stage": ["head", "finetune", "finetune"],
                  "loss": [9, 7, 6], "mae": [12.0, 9.0, 8.0], "val_loss": [9, 8, 7],
                  "val_mae": [13.0, 10.0, 9.5], "lr": [1e-3, 1e-4, 1e-5]}
                 ).to_csv(model_dir / "history.csv", index=False)
    (model_dir / "config.json").write_text(json.dumps({"image_size": SIZE}))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    (root / "data").mkdir()
    (root / "model").mkdir()
    ages = _write_data(root / "data")
    _export(root / "model")
    return root, ages


def test_evaluate_end_to_end(setup):
    root, ages = setup
    out = root / "out"
    result = evaluate.evaluate(str(root / "model"), str(root / "data"), "test", str(out),
                               batch_size=5, worst=4)
    pred = pd.read_csv(out / "predictions.csv", dtype={"gender": str})
    assert len(pred) == N_TEST
    assert list(pred.columns[:5]) == ["id", "file", "true_age", "predicted_age", "blur"]
    assert sorted(pred["id"]) == [f"id{i:03d}" for i in range(N_TEST)]
    assert sorted(pred["true_age"]) == sorted(ages)
    assert set(pred["gender"]) == {"0", "1"}
    saved = json.loads((out / "metrics.json").read_text())
    mae = float(np.mean(np.abs(pred.predicted_age - pred.true_age)))
    assert saved["overall"]["mae"] == pytest.approx(mae, abs=1e-3)
    assert saved["overall"]["count"] == N_TEST == result["examples"]
    assert {r["group"] for r in saved["by_column"]["gender"]} == {"0", "1"}
    for name in ("report.html", "report.md", "plots/learning_curves.png",
                 "plots/worst_predictions.png", "plots/age_histograms.png"):
        assert (out / name).is_file(), name
    assert f"{saved['overall']['mae']:.2f}" in (out / "report.md").read_text()


def test_tta_flip_averages_image_and_mirror(setup):
    root, _ = setup
    plain = evaluate.evaluate(str(root / "model/saved_model"), str(root / "data"), "test",
                              str(root / "plain"), batch_size=8, worst=0)
    flipped = evaluate.evaluate(str(root / "model"), str(root / "data"), "test",
                                str(root / "tta"), batch_size=8, tta_flip=True, worst=0)
    p = pd.read_csv(root / "plain/predictions.csv")
    t = pd.read_csv(root / "tta/predictions.csv")
    # The mirror's left half is black (age 5), so TTA gives the mean of the plain guess and 5.
    np.testing.assert_allclose(t.predicted_age, (p.predicted_age + 5.0) / 2, atol=1e-3)
    assert flipped["tta_flip"] and not plain["tta_flip"]


def test_bad_inputs_are_named(setup, tmp_path):
    root, _ = setup
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        evaluate.locate_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="stats.json"):
        evaluate.evaluate(str(root / "model"), str(tmp_path), "test", str(tmp_path / "o"))
    with pytest.raises(ValueError, match="--split='dev'"):
        evaluate.evaluate(str(root / "model"), str(root / "data"), "dev", str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="no 'validation' shards"):
        evaluate.evaluate(str(root / "model"), str(root / "data"), "validation",
                          str(tmp_path / "o"))


@pytest.mark.slow
def test_cli_subprocess(setup):
    root, _ = setup
    out = root / "cli"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.evaluate", f"--model={root / 'model'}",
         f"--data_dir={root / 'data'}", "--split=test", f"--output_dir={out}", "--tta_flip"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["count"] == N_TEST
    assert summary["mae"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["overall"]["mae"])
