"""trainer.compare on run dirs: contract files written here, and two brief real trainer runs."""

import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from preprocessing.fake_records import write_dataset
from trainer import compare, evaluate, metrics, train
from trainer.config import Config


def _run_dir(root, name, *, head, val_mae, offset):
    run = root / name
    (run / "eval_test").mkdir(parents=True)
    config = {"data_dir": "/data", "model_dir": str(run), "backbone": "tiny", "head": head,
              "epochs": 3, "image_size": 32}
    (run / "config.json").write_text(json.dumps(config))
    pd.DataFrame({"epoch": [0, 1, 2], "stage": ["head", "finetune", "finetune"],
                  "loss": [3.0, 2.0, 1.0], "mae": [10.0, 8.0, 6.0],
                  "val_loss": [3.0, 2.5, 2.0], "val_mae": val_mae,
                  "lr": [1e-3, 1e-4, 0.0]}).to_csv(run / "history.csv", index=False)
    (run / "metrics.json").write_text(json.dumps({"val_mae": val_mae[-1]}))
    true = np.array([5.0, 15, 25, 35, 45, 55, 65, 75])
    pred = pd.DataFrame({"true_age": true, "predicted_age": true + offset})
    pred.to_csv(run / "eval_test" / "predictions.csv", index=False)
    evaluation = {"split": "test", **metrics.evaluation_metrics(pred)}
    (run / "eval_test" / "metrics.json").write_text(json.dumps(evaluation))
    return run


@pytest.fixture
def runs(tmp_path):
    return [_run_dir(tmp_path, "regression", head="regression", val_mae=[11.0, 9.0, 7.5],
                     offset=np.array([1, -1, 2, -2, 3, -3, 6, -8])),
            _run_dir(tmp_path, "dex", head="dex", val_mae=[12.0, 8.0, 8.5],
                     offset=np.array([0, 0, 1, 1, 2, 2, 4, 4]))]


def test_compare_table_and_files(runs, tmp_path):
    out = tmp_path / "cmp"
    table = compare.compare([str(r) for r in runs], str(out)).set_index("run")
    # Only what differs between the runs is shown as a setting; paths are not settings.
    assert "head" in table.columns and "backbone" not in table.columns
    assert "model_dir" not in table.columns
    assert table.loc["dex", "head"] == "dex"
    assert table.loc["regression", "test_mae"] == pytest.approx(26 / 8)
    assert table.loc["dex", "test_mae"] == pytest.approx(14 / 8)
    assert table.loc["dex", "test_60+_mae"] == pytest.approx(4.0)
    assert table.loc["dex", "best_val_mae"] == 8.0 and table.loc["dex", "best_epoch"] == 1
    assert table.loc["regression", "val_minus_train_mae"] == pytest.approx(1.5)
    assert table.loc["dex", "val_mae"] == 8.5  # the trainer's metrics.json

    saved = pd.read_csv(out / "compare.csv").set_index("run")
    assert saved.loc["dex", "test_mae"] == pytest.approx(table.loc["dex", "test_mae"])
    md = (out / "compare.md").read_text()
    assert "| dex | dex |" in md and "1.75" in md and "3.25" in md
    page = (out / "compare.html").read_text()
    embedded = re.findall(r"base64,([A-Za-z0-9+/=]+)'", page)
    assert len(embedded) == 2
    assert base64.b64decode(embedded[0]) == (out / "plots/learning_curves.png").read_bytes()
    assert (out / "plots/band_mae.png").is_file()


def test_compare_reports_missing_evaluations_and_bad_dirs(runs, tmp_path):
    table = compare.compare([str(runs[0])], str(tmp_path / "one"), split="validation")
    assert "test_mae" not in table.columns
    assert "head" in table.columns  # one run: its key settings are shown
    assert "No validation evaluation for: regression" in (tmp_path / "one/compare.md").read_text()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is it a trainer --model_dir"):
        compare.load_run(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compare.load_run(str(tmp_path / "nope"))


def test_cli(runs, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.compare", *map(str, runs), f"--output_dir={out}"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "regression" in proc.stdout and (out / "compare.html").is_file()


@pytest.mark.slow
def test_compare_two_real_trainer_runs(tmp_path):
    """Regression vs dex, each trained briefly by the real trainer, evaluated, then compared."""
    data = write_dataset(tmp_path / "data", image_size=32,
                         counts={"train": 48, "validation": 12, "test": 12})
    dirs = []
    for head in ("regression", "dex"):
        run = tmp_path / head
        train.run(Config(data_dir=data, model_dir=str(run), backbone="tiny", weights="none",
                         head=head, batch_size=8, epochs=2, freeze_epochs=0,
                         steps_per_epoch=2, augment="none", verbose=0))
        evaluate.evaluate(str(run), data, "test", str(run / "eval_test"), batch_size=8)
        dirs.append(str(run))
    table = compare.compare(dirs, str(tmp_path / "cmp")).set_index("run")
    assert list(table.index) == ["regression", "dex"]
    assert table.loc["dex", "head"] == "dex" and table.loc["regression", "epochs_run"] == 2
    for head in ("regression", "dex"):
        saved = json.loads((tmp_path / head / "eval_test" / "metrics.json").read_text())
        assert table.loc[head, "test_mae"] == pytest.approx(saved["overall"]["mae"])
        history = pd.read_csv(tmp_path / head / "history.csv")
        assert table.loc[head, "best_val_mae"] == pytest.approx(history["val_mae"].min())
        trained = json.loads((tmp_path / head / "metrics.json").read_text())
        assert table.loc[head, "val_mae"] == pytest.approx(trained["val_mae"])
    assert (tmp_path / "cmp" / "plots" / "learning_curves.png").is_file()
