"""The trainer flags passed through to ``python -m trainer.task`` in the cloud, checked here.

The job runs on machines that see neither the laptop's disk nor its flags, so the mistakes
worth catching before submission are: local paths where the trainer will read or write, a
``--distribution_strategy`` that contradicts the worker pools, and a global ``--batch_size``
that tf.distribute cannot split evenly over the replicas.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer.config import defaults as _trainer_defaults  # stdlib only: no TensorFlow import

# Trainer flags that name files the cloud replicas read or write.
PATH_FLAGS = ("data_dir", "model_dir", "checkpoint_dir", "tensorboard_dir")
# Values of --weights that are not paths.
WEIGHT_KEYWORDS = ("imagenet", "none", "")
TRAINER_DEFAULT_BATCH = _trainer_defaults()["batch_size"]


def parse(args: Sequence[str], what: str = "trainer") -> dict[str, str]:
    """``["--a=1", "--b", "2", "--flag"]`` -> ``{"a": "1", "b": "2", "flag": ""}``.

    Mirrors absl's syntax; positional arguments are rejected because the trainer takes none
    and a stray one usually means a missing ``=``.
    """
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            raise ValueError(f"{what} argument {token!r} is not a --flag (after `--` pass the "
                             f"{what}'s flags as --name=value)")
        name, eq, value = token[2:].partition("=")
        if not eq and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value, i = args[i + 1], i + 1
        out[name] = value
        i += 1
    return out


def check(args: Sequence[str], strategy: str, replicas: int, tuned: Sequence[str] = (),
          defaults: dict[str, str] | None = None) -> tuple:
    """Validates pass-through trainer args; returns them with ``--distribution_strategy`` added.

    ``strategy`` is what the worker pools imply; ``replicas`` the total number of tf.distribute
    replicas (GPUs or TPU cores over all machines); ``tuned`` the flags a tuning job sets;
    ``defaults`` further flags appended when the user did not give them (e.g. ``tpu=local``).
    """
    flags = parse(args)
    if "data_dir" not in flags:
        raise ValueError("the trainer needs --data_dir=gs://... (pass it after `--`)")
    for name in PATH_FLAGS:
        if name in flags:
            _require_gs_arg(name, flags[name])
    weights = flags.get("weights", "")
    if weights not in WEIGHT_KEYWORDS:  # case-sensitive, as the trainer reads it
        _require_gs_arg("weights", weights)

    given = flags.get("distribution_strategy")
    if given not in (None, strategy):
        raise ValueError(f"trainer flag --distribution_strategy={given} contradicts the worker "
                         f"pools, which need --distribution_strategy={strategy} (leave it out "
                         "and it is set for you)")
    # Left out, the trainer's default applies, and it must split over the replicas just the same
    # (e.g. 64 over 3 workers x 4 GPUs would fail only after the machines are provisioned).
    given_batch = "batch_size" in flags
    batch_text = flags["batch_size"] if given_batch else str(TRAINER_DEFAULT_BATCH)
    try:
        batch = int(batch_text)
    except ValueError:
        raise ValueError(f"trainer flag --batch_size={batch_text!r} is not an integer") from None
    if batch < replicas or batch % replicas:
        origin = "" if given_batch else " (the trainer's default; pass --batch_size after `--`)"
        raise ValueError(f"trainer flag --batch_size={batch}{origin} is the GLOBAL batch and "
                         f"must be a multiple of the {replicas} replicas of this job (e.g. "
                         f"{replicas * max(1, batch // replicas)})")
    clash = sorted(set(tuned) & set(flags))
    if clash:
        raise ValueError(f"trainer flags {', '.join('--' + c for c in clash)} are also tuned "
                         "(--tune_params); the tuning service sets them per trial, drop them "
                         "after `--`")
    out = tuple(args)
    for name, value in {"distribution_strategy": strategy, **(defaults or {})}.items():
        if name not in flags:
            out += (f"--{name}={value}",)
    return out


def _require_gs_arg(name: str, value: str) -> None:
    if not value.startswith("gs://"):
        raise ValueError(f"trainer flag --{name}={value!r} must be a gs:// URI: Vertex AI "
                         "replicas cannot see local paths")
