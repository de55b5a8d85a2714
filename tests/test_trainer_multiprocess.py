"""Real subprocesses: two multi-worker processes on localhost, and SIGTERM + resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from preprocessing.fake_records import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _task_args(data_dir, model_dir, **flags):
    base = {"backbone": "tiny", "weights": "none", "batch_size": 8, "image_size": 32,
            "augment": "none", "verbose": 0}
    base.update(flags)
    return [sys.executable, "-m", "trainer.task", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", *(f"--{k}={v}" for k, v in base.items())]


def test_two_workers_train_and_write_one_set_of_artefacts(tmp_path):
    data_dir = write_dataset(tmp_path / "data", counts={"train": 32, "validation": 8})
    model_dir = tmp_path / "model"
    workers = [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            _task_args(data_dir, model_dir, epochs=2, freeze_epochs=1, steps_per_epoch=2,
                       distribution_strategy="multi_worker_mirrored"),
            env=_env(TF_CONFIG=json.dumps(tf_config)), cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "2 replica(s) on 2 worker(s)" in outputs[0][1]
    names = sorted(os.listdir(model_dir))
    assert names == ["checkpoints", "config.json", "history.csv", "history.json", "metrics.json",
                     "saved_model", "tensorboard"]
    # No worker-<id> or backup directories are left behind.
    assert sorted(os.listdir(model_dir / "checkpoints")) == ["best.json", "best.weights.h5"]
    lines = (model_dir / "history.csv").read_text().splitlines()
    assert len(lines) == 3  # header + 2 epochs, written once
    # Both workers computed the same global metrics; the chief's are the artefact.
    printed = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert printed[0]["val_mae"] == pytest.approx(printed[1]["val_mae"], rel=1e-5)
    assert json.loads((model_dir / "metrics.json").read_text()) == printed[0]


def test_sigterm_mid_epoch_then_restart_resumes(tmp_path):
    data_dir = write_dataset(tmp_path / "data", counts={"train": 32, "validation": 8})
    model_dir = tmp_path / "model"
    args = _task_args(data_dir, model_dir, epochs=4, freeze_epochs=1, steps_per_epoch=150,
                      export="false")
    proc = subprocess.Popen(args, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    history = model_dir / "history.json"
    deadline = time.time() + 180
    # Wait until two epochs are done (the second in the fine-tuning stage), then kill mid-epoch.
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(json.loads(history.read_text() or "[]")) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be interrupted"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    rows_before = json.loads(history.read_text())
    done_before = [r["epoch"] for r in rows_before]
    assert done_before[:2] == [0, 1] and len(done_before) < 4
    restarted = subprocess.run(args, env=_env(), cwd=ROOT, capture_output=True, text=True,
                               timeout=240)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "stage head: resuming" in restarted.stderr  # the finished head is restored, not rerun
    rows = json.loads(history.read_text())
    assert [(r["epoch"], r["stage"]) for r in rows] == [
        (0, "head"), (1, "fine_tune"), (2, "fine_tune"), (3, "fine_tune")]
    # Epochs finished before the kill were not re-run: their rows are the original ones.
    assert rows[:len(rows_before)] == rows_before
