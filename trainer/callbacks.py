"""Keras callbacks of the trainer: history files, best weights, hypertune, precise BatchNorm.

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
import warnings

import keras
import tensorflow as tf

from contract.files import read_json, write_text
from trainer import model as model_lib
from trainer import precise_bn

HISTORY_COLUMNS = ("epoch", "stage", "loss", "mae", "val_loss", "val_mae", "lr")
BEST_WEIGHTS, BEST_INFO = "best.weights.h5", "best.json"  # in CHECKPOINT_DIR
NO_BEST = {"value": math.inf, "epoch": -1}


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

    # Its per-step hook only reads the clock: Keras may run it off the training thread. Without
    # this, any on_train_batch_end makes Keras wait for every step's result before dispatching
    # the next one.
    async_safe = True

    def __init__(self, model_dir: str, stage: str, images_per_epoch: int,
                 val_loss_scale: float = 1.0):
        super().__init__()
        self.csv_path = model_dir + "/history.csv"
        self.json_path = model_dir + "/history.json"
        self.stage, self.images_per_epoch = stage, images_per_epoch
        self.val_loss_scale = val_loss_scale  # see train.Plan.val_loss_scale
        self.rows = read_json(self.json_path, [])
        self._start, self._lr = 0.0, math.nan

    def on_epoch_begin(self, epoch, logs=None):
        self.rows = [r for r in self.rows if r["epoch"] < epoch]
        # The rate the epoch starts with (at the end of a cosine stage it would always read 0).
        self._lr = current_lr(self.model.optimizer)
        self._start = self._last_step = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last_step = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        # Two rates: the whole epoch (with precise BN, validation and checkpoints) and the
        # training steps alone, which is what a step-throughput comparison needs.
        train_seconds = max(self._last_step - self._start, 1e-9)
        row = {"epoch": epoch, "stage": self.stage, "lr": self._lr,
               "seconds": seconds, "images_per_second": self.images_per_epoch / seconds,
               "train_seconds": train_seconds,
               "train_images_per_second": self.images_per_epoch / train_seconds}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        if "val_loss" in row:
            row["val_loss"] *= self.val_loss_scale
        self.rows.append(row)
        self.flush()

    def flush(self) -> None:
        write_text(self.json_path, json.dumps(self.rows, indent=1) + "\n")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HISTORY_COLUMNS)
        for r in self.rows:
            writer.writerow([r.get(c, "") for c in HISTORY_COLUMNS])
        write_text(self.csv_path, out.getvalue())


def read_best(checkpoint_dir: str) -> dict:
    """{"value": the lowest val_mae, "epoch": its epoch} of BestWeights; NO_BEST if none yet."""
    return read_json(f"{checkpoint_dir}/{BEST_INFO}", dict(NO_BEST))


def restore_best(model: keras.Model, checkpoint_dir: str) -> bool:
    """Loads the best weights into `model`; False (model untouched) if none were saved."""
    path = f"{checkpoint_dir}/{BEST_WEIGHTS}"
    if not tf.io.gfile.exists(path):
        return False
    with warnings.catch_warnings():
        # The file also holds the optimizer of the stage that wrote it; only the model weights
        # matter here, so Keras's "skipping optimizer variables" is expected.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optim")
        model.load_weights(model_lib.local_weights_file(path))
    return True


def remove_best(checkpoint_dir: str) -> None:
    """Forgets the best weights, so that a fresh run cannot restore an earlier run's."""
    for name in (BEST_INFO, BEST_WEIGHTS):  # info first: it alone makes the weights "best"
        if tf.io.gfile.exists(f"{checkpoint_dir}/{name}"):
            tf.io.gfile.remove(f"{checkpoint_dir}/{name}")


class BestWeights(keras.callbacks.Callback):
    """Keeps CHECKPOINT_DIR/best.weights.h5 at the lowest val_mae seen (across restarts)."""

    def __init__(self, checkpoint_dir: str, monitor: str = "val_mae"):
        super().__init__()
        self.weights_path = f"{checkpoint_dir}/{BEST_WEIGHTS}"
        self.info_path = f"{checkpoint_dir}/{BEST_INFO}"
        self.monitor = monitor
        self.best = read_best(checkpoint_dir)

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
        write_text(self.info_path, json.dumps(self.best) + "\n")


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


class PreciseBN(keras.callbacks.Callback):
    """Re-estimates BatchNorm moving statistics after each epoch's training, before validation.

    Keras fit() calls on_test_begin at the start of its validation pass, after the epoch's last
    training step: the recalibrated statistics are then what val_mae measures, what BestWeights
    and BackupAndRestore save at on_epoch_end, and so what the final evaluation and the export
    use. `dataset` is a distributed, repeating, un-augmented training dataset; one iterator over
    it lives as long as the callback, so successive epochs see successive batches. The seconds
    spent go into the epoch's logs (history.json, TensorBoard) as bn_recalibration_seconds.
    """

    def __init__(self, dataset, num_batches: int, strategy: tf.distribute.Strategy):
        super().__init__()
        self.dataset, self.num_batches, self.strategy = dataset, num_batches, strategy
        self._recalibrator: precise_bn.Recalibrator | None = None
        self._iterator = None
        self.seconds: float | None = None

    def on_train_begin(self, logs=None):
        # After compile_stage has set the stage's trainable flags: they decide which BN layers
        # run in training mode (none in the head stage, where the backbone is frozen).
        self._recalibrator = precise_bn.Recalibrator(self.model, self.strategy)
        if not self._recalibrator.layers:
            logging.info("precise BN: no BatchNorm layer trains in this stage; skipped")

    def on_epoch_begin(self, epoch, logs=None):
        self.seconds = None

    def on_test_begin(self, logs=None):
        if self._recalibrator is None or not self._recalibrator.layers or self.num_batches < 1:
            return
        if self._iterator is None:
            self._iterator = iter(self.dataset)
        start = time.perf_counter()
        count = self._recalibrator(self._iterator, self.num_batches)
        self.seconds = time.perf_counter() - start
        logging.info("precise BN: %d BatchNorm layers re-estimated over %d batches in %.1f s",
                     count, self.num_batches, self.seconds)

    def on_epoch_end(self, epoch, logs=None):
        # The same dict goes on to the callbacks after this one (HistoryWriter, TensorBoard).
        if self.seconds is not None and logs is not None:
            logs["bn_recalibration_seconds"] = self.seconds
