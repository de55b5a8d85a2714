"""Train, evaluate and export: ``run(config)`` is the whole job, and what the tests call.

Order: strategy -> plan (validated up front) -> data -> model -> fit, in two stages -> restore the
best weights -> evaluate on validation -> export. Stage one (``freeze_epochs``) trains the head
with the backbone frozen; stage two the unfrozen part. Each stage is one ``fit()`` with its own
optimizer, schedule and ``BackupAndRestore`` directory: after SIGTERM the same command resumes the
running stage's last finished epoch (a finished stage is restored, not re-run); the backups go
only once everything is written. Precise BN (``trainer.precise_bn``) re-estimates BatchNorm
statistics after each epoch's training, so val_mae, the best checkpoint and the export match.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import keras
import numpy as np
import tensorflow as tf

from contract import files
from contract import stats as stats_file
from contract.framing import Framing, image_size_problem
from contract.stats import SplitStats, Stats
from trainer import callbacks as cb
from trainer import data, distribution, losses, schedule, weighting
from trainer import model as model_lib
from trainer.augment import AugmentConfig
from trainer.config import Config, with_dirs

STAGES = ("head", "fine_tune")
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclasses.dataclass(frozen=True)
class Plan:
    """Numbers derived from config, data stats and strategy; logged before training."""

    framing: Framing             # the records' (stats.json) at the model's input size: the
    max_age: int                 # export frames served photos alike
    extra_columns: tuple
    train_count: int
    val_count: int
    num_replicas: int
    num_workers: int
    global_batch: int
    per_replica_batch: int
    steps_per_epoch: int
    val_steps: int               # validation steps covering the (padded) split once
    bn_recalibration_batches: int  # global batches averaged by precise BN (0 = off)
    age_weights: object          # np.ndarray indexed by floor(age)
    mean_age: float              # of the train split: the regression head's initial bias

    @property
    def image_size(self) -> int:
        return self.framing.image_size

    @property
    def val_loss_scale(self) -> float:
        """Keras averages the validation loss over padded batches; this undoes the padding."""
        return self.val_steps * self.global_batch / self.val_count

    def describe(self) -> str:
        return (f"image {self.framing.describe()}, max_age {self.max_age}; "
                f"train {self.train_count} / validation {self.val_count} examples; "
                f"global batch {self.global_batch} = "
                f"{self.num_replicas} replica(s) x {self.per_replica_batch} on "
                f"{self.num_workers} worker(s); {self.steps_per_epoch} steps/epoch "
                f"({self.steps_per_epoch * self.global_batch} images, "
                f"{self.steps_per_epoch * self.global_batch / max(self.train_count, 1):.2f} "
                f"passes over train); precise BN over {self.bn_recalibration_batches} batches")


def make_plan(config: Config, stats: Stats, num_replicas: int, num_workers: int = 1) -> Plan:
    """Validates the config against the data and the hardware; errors name the flag."""
    train, validation = (stats.split(name) or SplitStats(0) for name in ("train", "validation"))
    train_count, val_count = train.count, validation.count
    if train_count < 1:
        raise ValueError(f"--data_dir={config.data_dir!r}: stats.json reports no training "
                         "examples")
    if val_count < 1:
        raise ValueError(f"--data_dir={config.data_dir!r}: stats.json reports no validation "
                         "examples (validation MAE picks the best model)")
    if config.batch_size % num_replicas:
        raise ValueError(f"--batch_size={config.batch_size}: the global batch must divide evenly "
                         f"over {num_replicas} replicas")
    if config.steps_per_epoch == 0 and config.batch_size > train_count:
        raise ValueError(f"--batch_size={config.batch_size}: larger than the {train_count} "
                         "training examples (lower it or set --steps_per_epoch)")
    image_size = config.image_size or stats.image_size
    if image_size_problem(image_size):
        raise ValueError(f"--image_size={config.image_size}: stats.json's image_size "
                         f"{stats.image_size} is not usable ({image_size_problem(image_size)}); "
                         "set --image_size")
    record_framing = Framing.from_stats(stats, image_size=image_size,
                                        source=f"stats.json in {config.data_dir!r}")
    max_age = config.max_age or int(stats.max_age) or 100
    oldest = max((age for age, n in enumerate(train.age_histogram) if n), default=0)
    if config.head == "dex" and oldest > max_age:
        # An age past the last class has no label mass: the loss would be NaN from step one.
        raise ValueError(f"--max_age={config.max_age}: the training split has ages up to "
                         f"{oldest} (stats.json age_histogram), past the dex head's classes "
                         f"0..{max_age}; raise it, or 0 = stats.json's max_age")
    histogram = list(train.age_histogram) or [1] * (max_age + 1)
    histogram = (list(histogram) + [0] * (max_age + 1))[:max(len(histogram), max_age + 1)]
    weights = weighting.age_weights(histogram, config.sample_weighting,
                                    kernel_size=config.lds_kernel_size, sigma=config.lds_sigma,
                                    max_ratio=config.max_weight_ratio)
    steps = config.steps_per_epoch or train_count // config.batch_size
    # Validation is padded (age -1, weight 0, ignored by the metrics) to whole global batches:
    # every replica then gets a full batch on every step (an empty per-replica batch breaks
    # BatchNorm on CPU) and every worker runs the same number of evaluation steps (each one a
    # collective). One worker reads every example exactly once; several workers each read their
    # files' share, bounded assuming preprocessing's shards are of similar size.
    shards = validation.num_shards or 1
    per_worker = (val_count if num_workers == 1 else
                  math.ceil(shards / num_workers) * math.ceil(val_count / shards))
    val_steps = math.ceil(per_worker / (config.batch_size // num_workers))
    # More than one pass over train would only repeat batches; a tiny split still gets one.
    recalibration = min(config.bn_recalibration_batches,
                        max(1, train_count // config.batch_size))
    return Plan(framing=record_framing, max_age=max_age,
                extra_columns=stats.extra_columns, train_count=train_count,
                val_count=val_count, num_replicas=num_replicas, num_workers=num_workers,
                global_batch=config.batch_size,
                per_replica_batch=config.batch_size // num_replicas, steps_per_epoch=steps,
                val_steps=val_steps, bn_recalibration_batches=recalibration,
                age_weights=weights, mean_age=split_mean_age(train, histogram))


def split_mean_age(split: SplitStats, histogram) -> float:
    """The split's mean age: stats.json's exact "mean_age" if the split records one, else the
    floor(age) histogram's mean, exact for integer ages (UTKFace) and at most 1 year low."""
    if split.mean_age is not None:
        return split.mean_age
    return float(np.dot(np.arange(len(histogram)), histogram) / max(sum(histogram), 1))


def make_datasets(config: Config, plan: Plan, strategy: tf.distribute.Strategy):
    """(train, validation) distributed datasets, each built per input pipeline."""
    augment = AugmentConfig.default() if config.augment == "default" else AugmentConfig.none()

    def dataset_fn(split, training):
        def fn(input_context):
            per_replica = input_context.get_per_replica_batch_size(plan.global_batch)
            ds = data.build_dataset(
                config.data_dir, split, training=training, batch_size=per_replica,
                image_size=plan.image_size, extra_columns=plan.extra_columns,
                augment=augment if training else None,
                age_weights=plan.age_weights if training else None, cache=config.cache,
                shuffle_buffer=config.shuffle_buffer, seed=config.seed,
                deterministic=config.deterministic, input_context=input_context)
            return ds if training else pad_to_steps(ds, plan.image_size, per_replica,
                                                    plan.val_steps)
        return fn

    # Fail here, with the path and pattern, rather than inside a tf.function on a worker.
    data.list_files(config.data_dir, "train")
    data.list_files(config.data_dir, "validation")
    train = strategy.distribute_datasets_from_function(dataset_fn("train", True))
    val = strategy.distribute_datasets_from_function(dataset_fn("validation", False))
    return train, val


def make_calibration_dataset(config: Config, plan: Plan, strategy: tf.distribute.Strategy):
    """Precise BN's input: shuffled, repeating, UN-augmented training batches, distributed.

    Shuffled because batch statistics of sorted input (one age per batch) are not the
    population's; un-augmented because inference sees plain images. Each worker reads its own
    files: the statistics are all-reduced over the global batch (see trainer.precise_bn), so
    every worker still ends with the same values. Not cached: it reads only a few batches per
    epoch, through one iterator that lives for the whole stage.
    """
    def fn(input_context):
        return data.build_dataset(
            config.data_dir, "train", training=True,
            batch_size=input_context.get_per_replica_batch_size(plan.global_batch),
            image_size=plan.image_size, extra_columns=plan.extra_columns, augment=None,
            shuffle_buffer=config.shuffle_buffer, seed=config.seed + 1,
            deterministic=config.deterministic, input_context=input_context)
    return strategy.distribute_datasets_from_function(fn)


def pad_to_steps(ds: tf.data.Dataset, image_size: int, batch_size: int,
                 steps: int) -> tf.data.Dataset:
    """Batches of the finite `ds`, padded (age -1, weight 0) to exactly `steps` full batches.

    Every worker then runs the same number of validation steps. Finite on purpose: Keras makes a
    new iterator for each validation pass and drops the previous one at the next; an endless
    padded stream kept that iterator's prefetch running, and dropping it stalled most epochs
    for many seconds (bench.train_throughput shows it).
    """
    pad = tf.data.Dataset.from_tensors(
        (tf.zeros([image_size, image_size, 3]), tf.constant(losses.PAD_AGE), tf.constant(0.0)))
    return (ds.unbatch().concatenate(pad.repeat()).batch(batch_size, drop_remainder=True)
            .take(steps).prefetch(tf.data.AUTOTUNE))


def build(config: Config, plan: Plan, strategy: tf.distribute.Strategy) -> keras.Model:
    with strategy.scope():
        model = model_lib.build_model(
            backbone=config.backbone, image_size=plan.image_size, head=config.head,
            max_age=plan.max_age, weights=config.weights, dropout=config.dropout,
            bn_momentum=config.bn_momentum, initial_age=plan.mean_age)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Keras 3.15's fit() starts with a "symbolic build" that calls strategy.reduce() on the
        # whole (image, age, weight) tuple, which MultiWorkerMirroredStrategy rejects. Without a
        # remembered strategy Keras skips that step and builds while tracing the train step;
        # fit/evaluate run inside strategy.scope(), so they still pick up the strategy.
        model._distribute_strategy = None
    return model


def compile_stage(model: keras.Model, config: Config, plan: Plan, stage: str, epochs: int,
                  strategy: tf.distribute.Strategy) -> None:
    """Sets what trains in `stage` and compiles with a fresh optimizer and schedule."""
    model_lib.set_trainable(model, config.backbone, stage, config.unfreeze_layers,
                            config.train_bn)
    peak = config.head_learning_rate if stage == "head" else config.fine_tune_learning_rate
    lr = schedule.stage_schedule(peak, epochs, plan.steps_per_epoch, config.warmup_epochs)
    with strategy.scope():
        ema = {"use_ema": config.ema_momentum > 0, "ema_momentum": config.ema_momentum}
        if config.optimizer == "adamw":
            optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **ema)
        else:
            optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=True,
                                             weight_decay=config.weight_decay or None, **ema)
        model.compile(
            optimizer=optimizer,
            loss=losses.make_loss(config.loss_name, config.head, num_classes=plan.max_age + 1,
                                  dex_sigma=config.dex_sigma, huber_delta=config.huber_delta,
                                  batch_size=plan.global_batch),
            metrics=[losses.AgeMAE(config.head), losses.CumulativeScore(config.head, 5)],
            jit_compile=config.enable_xla, steps_per_execution=config.steps_per_execution)


def fit_stage(model, config: Config, plan: Plan, stage: str, first_epoch: int, last_epoch: int,
              train_ds, val_ds, dirs: distribution.WriteDirs, strategy,
              calibration_ds=None) -> None:
    """One stage: epochs [first_epoch, last_epoch) of the job's epoch count."""
    compile_stage(model, config, plan, stage, last_epoch - first_epoch, strategy)
    backup_dir = f"{dirs.backup_dir}/{stage}"
    resumed = _backed_up_epoch(backup_dir)
    if resumed is not None:
        logging.info("stage %s: resuming from %s (epoch %d of %d done)", stage, backup_dir,
                     resumed, config.epochs)
    # Keras keeps the epoch a BackupAndRestore restored in model._initial_epoch and never resets
    # it; clear it so the previous stage's value cannot leak into this fit().
    model._initial_epoch = None
    # The order is what each callback's hooks rely on; Keras calls them in list order.
    callbacks = [
        # First: at each epoch's end the resume state is saved before the best weights, which
        # run() keeps only when resume state exists. Both stages keep their backup when they
        # finish (run() removes them once everything is written), so a restart restores a
        # finished stage instead of training it again: the head during fine-tuning, both
        # during the final evaluation or export. With EMA it saves the raw weights and their
        # average as they are (an exact resume).
        keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False),
    ]
    if config.ema_momentum:
        # Before precise BN, so at on_test_begin the average is swapped in before the
        # statistics are re-estimated for it; before BestWeights, so at on_epoch_end the average
        # is what is kept (and, after the last epoch, what stays in the model).
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if calibration_ds is not None:
        # Before the recorders: its on_epoch_end adds bn_recalibration_seconds to the logs they
        # record. (The statistics themselves are set at on_test_begin, before any callback's
        # on_epoch_end saves weights.)
        callbacks.append(cb.PreciseBN(calibration_ds, plan.bn_recalibration_batches, strategy))
    callbacks += [
        cb.HistoryWriter(dirs.model_dir, stage, plan.steps_per_epoch * plan.global_batch,
                         plan.val_loss_scale),
        cb.BestWeights(dirs.checkpoint_dir),
        cb.HypertuneReporter(config.hypertune_metric),
    ]
    if cb.tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(dirs.tensorboard_dir, update_freq="epoch"))
    with strategy.scope():
        model.fit(train_ds, validation_data=val_ds, initial_epoch=first_epoch,
                  epochs=last_epoch, steps_per_epoch=plan.steps_per_epoch,
                  validation_steps=plan.val_steps, callbacks=callbacks, verbose=config.verbose,
                  shuffle=False)


def _backed_up_epoch(backup_dir: str) -> int | None:
    """The last epoch BackupAndRestore saved in this stage's backup dir, or None."""
    metadata = files.read_json(backup_dir + "/training_metadata.json", None)
    return None if metadata is None else int(metadata["epoch"])


def evaluate(model: keras.Model, val_ds, plan: Plan, strategy) -> dict:
    """Final validation numbers, in inference mode (Keras evaluate never uses training=True)."""
    with strategy.scope():
        results = model.evaluate(val_ds, steps=plan.val_steps, return_dict=True, verbose=0)
    return {"val_mae": float(results["mae"]), "val_cs5": float(results["cs5"]),
            "val_loss": float(results["loss"]) * plan.val_loss_scale,
            "val_count": plan.val_count}


def run(config: Config, strategy: tf.distribute.Strategy | None = None) -> dict:
    """The whole job. Returns the final metrics (also written to MODEL_DIR/metrics.json)."""
    config = with_dirs(config)
    strategy = strategy or distribution.create_strategy(config.distribution_strategy,
                                                        config.tpu)
    stats = stats_file.read(config.data_dir)
    plan = make_plan(config, stats, strategy.num_replicas_in_sync,
                     distribution.num_workers(strategy))
    logging.info("strategy: %s", distribution.describe(strategy))
    logging.info("plan: %s", plan.describe())
    chief = distribution.strategy_is_chief(strategy)
    dirs = distribution.WriteDirs(config.model_dir, config.checkpoint_dir, config.tensorboard_dir,
                                  chief, distribution.worker_id(strategy))
    previous_policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(POLICIES[config.dtype])
    try:
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.io.gfile.makedirs(dirs.model_dir)
        tf.io.gfile.makedirs(dirs.checkpoint_dir)
        config.save(dirs.model_dir + "/config.json")
        if not any(_backed_up_epoch(f"{dirs.backup_dir}/{s}") is not None for s in STAGES):
            # A fresh start, not a resume: the best weights a finished run left behind (a
            # different model perhaps) must be neither restored nor the val_mae to beat.
            # BackupAndRestore runs before BestWeights, so this run's best always has a backup.
            cb.remove_best(dirs.checkpoint_dir)
        train_ds, val_ds = make_datasets(config, plan, strategy)
        model = build(config, plan, strategy)
        calibration_ds = (make_calibration_dataset(config, plan, strategy)
                          if plan.bn_recalibration_batches else None)
        stage_epochs = {"head": (0, config.freeze_epochs),
                        "fine_tune": (config.freeze_epochs, config.epochs)}
        for stage in STAGES:
            first, last = stage_epochs[stage]
            if last > first:
                fit_stage(model, config, plan, stage, first, last, train_ds, val_ds, dirs,
                          strategy, calibration_ds)
        cb.restore_best(model, dirs.checkpoint_dir)
        metrics = evaluate(model, val_ds, plan, strategy)
        metrics["best_epoch"] = cb.read_best(dirs.checkpoint_dir)["epoch"]
        metrics["epochs"] = config.epochs
        metrics.update(plan.framing.served().to_dict())  # what the SavedModel serves
        logging.info("validation: %s", metrics)
        files.write_text(dirs.model_dir + "/metrics.json", json.dumps(metrics, indent=2) + "\n")
        if config.export:
            from trainer import export  # only needed at the end
            export.export_saved_model(model, dirs.model_dir + "/saved_model", plan.framing,
                                      config.head, plan.max_age,
                                      photo_face=config.photo_signature)
        _remove_backups(dirs)
        return metrics
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
        dirs.cleanup()


def _remove_backups(dirs: distribution.WriteDirs) -> None:
    """Everything is written: drop the resume state (every stage's is kept until now)."""
    for path in (dirs.backup_dir, ) if dirs.chief else (dirs.checkpoint_dir, ):
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path)
