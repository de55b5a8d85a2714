"""Keras callbacks of the trainer: per-epoch history files, best weights, hypertune reporting.

All of them survive a restart: they read back what the interrupted run wrote (history rows, the
best validation MAE so far) instead of starting over, and they rewrite whole files rather than
append, because gs:// objects cannot be appended to.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time

import keras
import tensorflow as tf

HISTORY_COLUMNS = ("epoch", "stage", "loss", "mae", "val_loss", "val_mae", "lr")


def _read_json(path: str, default):
    if not tf.io.gfile.exists(path):
        return default
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)  # readers never see a half-written file


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate  # Keras 3: the schedule evaluated at the current iteration
    return float(keras.ops.convert_to_numpy(lr))


def tensorboard_available() -> bool:
    """tf.summary needs the tensorboard package, which tensorflow-cpu does not pull in."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        logging.warning("tensorboard is not installed: no TensorBoard logs (pip install "
                        "tensorboard)")
        return False
    return True


class HistoryWriter(keras.callbacks.Callback):
    """MODEL_DIR/history.csv (the contract's columns) and history.json (every logged number).

    Epochs count across both stages. Rows of epochs >= the first epoch of this fit() are dropped
    first, so an epoch that was interrupted and re-run appears once.
    """

    def __init__(self, model_dir: str, stage: str, images_per_epoch: int,
                 val_loss_scale: float = 1.0):
        super().__init__()
        self.csv_path = model_dir + "/history.csv"
        self.json_path = model_dir + "/history.json"
        self.stage, self.images_per_epoch = stage, images_per_epoch
        self.val_loss_scale = val_loss_scale  # see train.Plan.val_loss_scale
        self.rows = _read_json(self.json_path, [])
        self._start, self._lr = 0.0, math.nan

    def on_epoch_begin(self, epoch, logs=None):
        self.rows = [r for r in self.rows if r["epoch"] < epoch]
        # The rate the epoch starts with (at the end of a cosine stage it would always read 0).
        self._lr = current_lr(self.model.optimizer)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        row = {"epoch": epoch, "stage": self.stage, "lr": self._lr,
               "seconds": seconds, "images_per_second": self.images_per_epoch / seconds}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        if "val_loss" in row:
            row["val_loss"] *= self.val_loss_scale
        self.rows.append(row)
        self.flush()

    def flush(self) -> None:
        _write_text(self.json_path, json.dumps(self.rows, indent=1) + "\n")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HISTORY_COLUMNS)
        for r in self.rows:
            writer.writerow([r.get(c, "") for c in HISTORY_COLUMNS])
        _write_text(self.csv_path, out.getvalue())


class BestWeights(keras.callbacks.Callback):
    """Keeps CHECKPOINT_DIR/best.weights.h5 at the lowest val_mae seen (across restarts)."""

    def __init__(self, checkpoint_dir: str, monitor: str = "val_mae"):
        super().__init__()
        self.weights_path = checkpoint_dir + "/best.weights.h5"
        self.info_path = checkpoint_dir + "/best.json"
        self.monitor = monitor
        self.best = _read_json(self.info_path, {"value": math.inf, "epoch": -1})

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not value < self.best["value"]:
            return
        tf.io.gfile.makedirs(os.path.dirname(self.weights_path))
        # Keras writes h5 through a local file API; write locally then copy for gs:// dirs.
        local = self.weights_path if "://" not in self.weights_path else (
            f"/tmp/face_age_best_{os.getpid()}.weights.h5")
        self.model.save_weights(local, overwrite=True)
        if local != self.weights_path:
            tf.io.gfile.copy(local, self.weights_path, overwrite=True)
        self.best = {"value": float(value), "epoch": int(epoch)}
        _write_text(self.info_path, json.dumps(self.best) + "\n")


class HypertuneReporter(keras.callbacks.Callback):
    """Reports a metric to Vertex AI hyperparameter tuning after every epoch.

    Only active inside a tuning trial (Vertex sets CLOUD_ML_TRIAL_ID) and only if the optional
    cloudml-hypertune package (extra [cloud]) is installed.
    """

    def __init__(self, metric: str = "val_mae"):
        super().__init__()
        self.metric = metric
        self._hpt = None
        if os.environ.get("CLOUD_ML_TRIAL_ID"):
            try:
                import hypertune
            except ImportError:
                logging.warning("tuning trial, but cloudml-hypertune is not installed: "
                                "metrics are not reported (pip install face-age[cloud])")
            else:
                self._hpt = hypertune.HyperTune()

    @property
    def active(self) -> bool:
        return self._hpt is not None

    def on_epoch_end(self, epoch, logs=None):
        if self._hpt is not None and self.metric in (logs or {}):
            self._hpt.report_hyperparameter_tuning_metric(
                hyperparameter_metric_tag=self.metric, metric_value=float(logs[self.metric]),
                global_step=epoch + 1)
