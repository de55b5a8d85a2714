"""The trainer's one frozen, validated configuration, built once from the flags.

``Config`` is the only thing the library functions read (nothing below ``trainer.task`` touches
absl FLAGS), so tests build one directly: ``Config(data_dir=..., model_dir=..., backbone="tiny")``.
Every validation error names the flag (``--batch_size=...``) the user has to change. The resolved
config is written as ``MODEL_DIR/config.json`` beside the checkpoints.

Directory defaults follow Vertex AI: ``--model_dir`` / ``--checkpoint_dir`` / ``--tensorboard_dir``
fall back to ``AIP_MODEL_DIR`` / ``AIP_CHECKPOINT_DIR`` / ``AIP_TENSORBOARD_LOG_DIR`` and then to
``MODEL_DIR/checkpoints`` and ``MODEL_DIR/tensorboard``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping

from contract import files
from contract.framing import image_size_problem

BACKBONES = ("resnet50", "mobilenet_v3_small", "mobilenet_v3_small_minimalistic",
             "mobilenet_v3_large", "efficientnet_b0", "tiny")
HEADS = ("regression", "dex")
LOSSES = {"regression": ("mae", "huber", "mse"), "dex": ("kl", "ce")}
WEIGHTINGS = ("none", "inverse_frequency", "lds")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
OPTIMIZERS = ("adamw", "sgd")
DTYPES = ("fp32", "bf16", "fp16")
AUGMENTS = ("default", "none")
PHOTO_SIGNATURES = ("none", "detect", "align")  # trainer.photo_signature (the [faces] extra)


@dataclasses.dataclass(frozen=True)
class Config:
    # Data.
    data_dir: str
    model_dir: str
    checkpoint_dir: str = ""      # "" -> MODEL_DIR/checkpoints (see resolve_dirs)
    tensorboard_dir: str = ""     # "" -> MODEL_DIR/tensorboard
    image_size: int = 0           # 0 -> the image_size preprocessing wrote (stats.json)
    augment: str = "default"
    cache: bool = False
    shuffle_buffer: int = 2048
    seed: int = 0
    deterministic: bool = False
    # Model.
    backbone: str = "resnet50"
    weights: str = "imagenet"     # imagenet | none | PATH (local or gs:// weights file)
    head: str = "regression"
    max_age: int = 0              # 0 -> stats.json max_age
    dex_sigma: float = 2.0        # Gaussian label distribution (DLDL) width in years; 0 = one-hot
    dropout: float = 0.2
    bn_momentum: float = 0.99
    bn_recalibration_batches: int = 50  # precise BN before each validation; 0 disables
    train_bn: bool = True
    # Loss and imbalance.
    loss: str = "auto"            # auto -> mae (regression) / kl (dex)
    huber_delta: float = 5.0
    sample_weighting: str = "none"
    lds_sigma: float = 2.0
    lds_kernel_size: int = 9
    max_weight_ratio: float = 10.0
    # Optimisation.
    batch_size: int = 64          # GLOBAL batch: split over all replicas of all workers
    epochs: int = 10              # total, both stages
    freeze_epochs: int = 2        # of which the first ones train the head only
    steps_per_epoch: int = 0      # 0 -> floor(train count / global batch)
    unfreeze: str = "all"         # all | last_block | K (last K backbone layers)
    optimizer: str = "adamw"
    head_learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    ema_momentum: float = 0.0     # 0 = off; else validation, best weights and export use the EMA
    # Performance and distribution.
    dtype: str = "fp32"
    enable_xla: bool = False
    steps_per_execution: int = 1
    distribution_strategy: str = "auto"
    tpu: str = ""
    # Outputs.
    export: bool = True
    photo_signature: str = "none"  # detect|align: the export adds predict_photo
    hypertune_metric: str = "val_mae"
    verbose: int = 2              # Keras progress: 0 silent, 1 bar, 2 one line per epoch

    def __post_init__(self):
        _validate(self)

    @property
    def loss_name(self) -> str:
        if self.loss != "auto":
            return self.loss
        return "mae" if self.head == "regression" else "kl"

    @property
    def unfreeze_layers(self) -> int | str:
        """'all', 'last_block' or the number of last backbone layers to train."""
        return self.unfreeze if self.unfreeze in ("all", "last_block") else int(self.unfreeze)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(dataclasses.asdict(self), indent=indent, sort_keys=True)

    def save(self, path: str) -> None:
        files.write_text(path, self.to_json() + "\n")


def _fail(flag: str, value, why: str):
    raise ValueError(f"--{flag}={value!r}: {why}")


def _validate(c: Config) -> None:
    if not c.data_dir:
        _fail("data_dir", c.data_dir, "required: the output_dir of preprocessing.run")
    if not c.model_dir:
        _fail("model_dir", c.model_dir, "required (or set AIP_MODEL_DIR)")
    choices = {"backbone": BACKBONES, "head": HEADS, "sample_weighting": WEIGHTINGS,
               "distribution_strategy": STRATEGIES, "optimizer": OPTIMIZERS, "dtype": DTYPES,
               "augment": AUGMENTS, "photo_signature": PHOTO_SIGNATURES}
    for flag, allowed in choices.items():
        if getattr(c, flag) not in allowed:
            _fail(flag, getattr(c, flag), f"must be one of {', '.join(allowed)}")
    if c.loss != "auto" and c.loss not in LOSSES[c.head]:
        _fail("loss", c.loss, f"with --head={c.head} must be auto or one of "
                              f"{', '.join(LOSSES[c.head])}")
    positive_ints = ("batch_size", "epochs", "steps_per_execution", "shuffle_buffer",
                     "lds_kernel_size")
    for flag in positive_ints:
        if not isinstance(getattr(c, flag), int) or getattr(c, flag) < 1:
            _fail(flag, getattr(c, flag), "must be a positive integer")
    for flag in ("image_size", "max_age", "steps_per_epoch", "freeze_epochs",
                 "bn_recalibration_batches"):
        if not isinstance(getattr(c, flag), int) or getattr(c, flag) < 0:
            _fail(flag, getattr(c, flag), "must be a non-negative integer (0 = automatic)"
                  if flag in ("image_size", "max_age", "steps_per_epoch")
                  else "must be a non-negative integer")
    if c.image_size and image_size_problem(c.image_size):
        _fail("image_size", c.image_size,
              f"{image_size_problem(c.image_size)} (or 0 = from stats.json)")
    if c.freeze_epochs > c.epochs:
        _fail("freeze_epochs", c.freeze_epochs, f"cannot exceed --epochs={c.epochs} (the total)")
    if c.unfreeze not in ("all", "last_block") and not (c.unfreeze.isdigit() and
                                                          int(c.unfreeze) > 0):
        _fail("unfreeze", c.unfreeze, "must be all, last_block or a positive number of layers")
    for flag in ("head_learning_rate", "fine_tune_learning_rate"):
        value = getattr(c, flag)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            _fail(flag, value, "must be a positive number")
    ranges = {"dropout": (0.0, 0.95), "bn_momentum": (0.0, 0.9999), "weight_decay": (0.0, 1.0),
              "momentum": (0.0, 0.999), "warmup_epochs": (0.0, 1e6),
              "ema_momentum": (0.0, 0.9999), "dex_sigma": (0.0, 50.0),
              "lds_sigma": (0.0, 50.0), "huber_delta": (1e-6, 1e6)}
    for flag, (low, high) in ranges.items():
        value = getattr(c, flag)
        if not (isinstance(value, (int, float)) and low <= value <= high):
            _fail(flag, value, f"must be a number in [{low}, {high}]")
    if c.max_weight_ratio < 1:
        _fail("max_weight_ratio", c.max_weight_ratio, "must be >= 1 (rarest / commonest age)")
    if c.sample_weighting == "lds" and (c.lds_sigma <= 0 or c.lds_kernel_size % 2 == 0):
        _fail("lds_kernel_size" if c.lds_kernel_size % 2 == 0 else "lds_sigma",
              c.lds_kernel_size if c.lds_kernel_size % 2 == 0 else c.lds_sigma,
              "LDS needs an odd kernel size and a positive sigma")
    if c.distribution_strategy == "tpu" and not c.tpu:
        _fail("tpu", c.tpu, "required with --distribution_strategy=tpu (name, grpc:// address "
                            "or 'local')")
    if c.dtype == "fp16" and c.distribution_strategy == "tpu":
        _fail("dtype", c.dtype, "TPUs support bf16, not fp16")
    if c.verbose not in (0, 1, 2):
        _fail("verbose", c.verbose, "must be 0, 1 or 2")
    if not c.weights:
        _fail("weights", c.weights, "must be imagenet, none or a weights file path")


def resolve_dirs(model_dir: str, checkpoint_dir: str, tensorboard_dir: str,
                 env: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """Flag value, else Vertex AI's AIP_* variable, else a sub-directory of the model dir."""
    env = os.environ if env is None else env
    model_dir = model_dir or env.get("AIP_MODEL_DIR", "")
    if not model_dir:
        _fail("model_dir", model_dir, "required (or set AIP_MODEL_DIR)")
    model_dir = model_dir.rstrip("/")
    checkpoint_dir = (checkpoint_dir or env.get("AIP_CHECKPOINT_DIR", "")
                      or model_dir + "/checkpoints")
    tensorboard_dir = (tensorboard_dir or env.get("AIP_TENSORBOARD_LOG_DIR", "")
                       or model_dir + "/tensorboard")
    return model_dir, checkpoint_dir.rstrip("/"), tensorboard_dir.rstrip("/")


def defaults() -> dict:
    """Field name -> default, so flags.py declares each flag's default in one place (here)."""
    return {f.name: f.default for f in dataclasses.fields(Config)
            if f.default is not dataclasses.MISSING}


def from_flags(flag_values, env: Mapping[str, str] | None = None) -> Config:
    """Builds the Config from parsed absl flags (any object with one attribute per field)."""
    values = {f.name: getattr(flag_values, f.name) for f in dataclasses.fields(Config)}
    values["model_dir"], values["checkpoint_dir"], values["tensorboard_dir"] = resolve_dirs(
        values["model_dir"] or "", values["checkpoint_dir"] or "",
        values["tensorboard_dir"] or "", env)
    values["data_dir"] = values["data_dir"] or ""
    return Config(**values)


def with_dirs(config: Config) -> Config:
    """Fills empty checkpoint/tensorboard dirs (configs built in code rather than from flags)."""
    m, c, t = resolve_dirs(config.model_dir, config.checkpoint_dir, config.tensorboard_dir, {})
    return dataclasses.replace(config, model_dir=m, checkpoint_dir=c, tensorboard_dir=t)
