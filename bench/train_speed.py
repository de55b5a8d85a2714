"""Training step speed per backbone: bf16, XLA and steps_per_execution against fp32, in one run.

    python -m bench.train_speed [--cases mobilenet_v3_small@96,resnet50@64] [--variants ...]

For each backbone@size, each variant compiles the CPU recipe's model and optimizer (DEX head,
AdamW, the trainer's own ``compile_stage``) with its ``--dtype``, ``--enable_xla`` and
``--steps_per_execution``, and times ``fit`` on one in-memory batch, repeated, after a warm-up
epoch: the model's step rate without the input pipeline (``bench.train_throughput`` measures
that the trainer's tf.data keeps up with it). Every variant runs in its own process, so no
dtype policy, XLA cache or thread pool carries over; the fp32 row of each case is the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = {  # name -> Config fields
    "fp32": {},
    "OneDeviceStrategy": {"_strategy": "one_device_cpu"},  # the trainer's CPU strategy until now
    "bf16": {"dtype": "bf16"},
    "xla": {"enable_xla": True},
    "bf16+xla": {"dtype": "bf16", "enable_xla": True},
    "spe8": {"steps_per_execution": 8},
    "bf16+spe8": {"dtype": "bf16", "steps_per_execution": 8},
}
CASES = ("mobilenet_v3_small@96", "mobilenet_v3_large@96", "efficientnet_b0@96", "resnet50@64")
DEFAULT_VARIANTS = ("fp32", "OneDeviceStrategy", "bf16", "xla", "spe8")
SECONDS = 6  # per timed epoch (two are timed)


def measure(backbone: str, size: int, variant: str, batch_size: int) -> dict:
    """One variant's images/s (median of the timed epochs); runs in a fresh process."""
    import keras
    import numpy as np
    import tensorflow as tf

    from bench.train_throughput import EpochTimer
    from bench.workdir import scratch
    from contract import stats as stats_file
    from preprocessing import fake_records
    from trainer import train
    from trainer.config import Config

    fields = dict(VARIANTS[variant])
    one_device = fields.pop("_strategy", None)
    spe = fields.get("steps_per_execution", 1)
    with scratch("train_speed_", keep=False) as work:
        fake_records.write_dataset(work, image_size=32, counts={"train": batch_size,
                                                                 "validation": 1})
        config = Config(data_dir=work, model_dir=work + "/model", backbone=backbone,
                        weights="none", head="dex", image_size=size, batch_size=batch_size,
                        steps_per_epoch=spe, freeze_epochs=0, **fields)
        keras.mixed_precision.set_dtype_policy(train.POLICIES[config.dtype])
        # The trainer's own CPU strategy (distribution.create_strategy("one_device")), or the
        # one it used before.
        strategy = (tf.distribute.OneDeviceStrategy("/cpu:0") if one_device
                    else tf.distribute.get_strategy())
        plan = train.make_plan(config, stats_file.read(work), 1)
        model = train.build(config, plan, strategy)
        train.compile_stage(model, config, plan, "fine_tune", 3, strategy)
    rng = np.random.default_rng(1)
    batch = (tf.constant(rng.uniform(0, 255, (batch_size, size, size, 3)), tf.float32),
             tf.constant(rng.uniform(1, 90, batch_size), tf.float32),
             tf.ones([batch_size], tf.float32))
    data = tf.data.Dataset.from_tensors(batch).repeat()
    timer = EpochTimer()
    # The first call traces (and with XLA compiles); the second sizes the timed epochs to about
    # SECONDS, so a slow variant (XLA in bf16 ran at a tenth of fp32) does not take minutes.
    with strategy.scope():  # as the trainer fits
        model.fit(data, steps_per_epoch=spe, epochs=1, callbacks=[timer], verbose=0)
        model.fit(data, steps_per_epoch=spe, epochs=1, callbacks=[timer], verbose=0)
        compile_seconds = timer.seconds[0] - timer.seconds[1]
        steps = max(1, round(SECONDS / timer.seconds[1])) * spe
        timer.seconds.clear()
        model.fit(data, steps_per_epoch=steps, epochs=2, callbacks=[timer], verbose=0)
    return {"images_per_second": float(np.median([steps * batch_size / s
                                                  for s in timer.seconds])),
            "compile_seconds": compile_seconds}


def cpu_bf16() -> str:
    """The CPU's bf16 instruction sets (Linux): without them bf16 matmuls are emulated."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    return " ".join(f for f in flags if f in ("avx512_bf16", "amx_bf16"))


def _run_variant(case: str, variant: str, batch_size: int) -> dict:
    cmd = [sys.executable, "-m", "bench.train_speed", "--one", case, "--variants", variant,
           "--batch_size", str(batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help="backbone@size, comma-separated")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated, from {','.join(VARIANTS)}")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one case, one variant
    args = p.parse_args(argv)
    if args.one:
        backbone, size = args.one.split("@")
        print(json.dumps(measure(backbone, int(size), args.variants, args.batch_size)))
        return
    variants = args.variants.split(",")
    print(f"training step images/s, batch {args.batch_size}, {os.cpu_count()} CPU cores "
          f"(bf16 instructions: {cpu_bf16() or 'none'}); x = against fp32 in the same run")
    print(f"{'case':24s}" + "".join(f"{v:>18s}" for v in variants))
    for case in args.cases.split(","):
        cells, base = [], None
        for variant in variants:
            r = _run_variant(case, variant, args.batch_size)
            if "error" in r:
                cells.append("failed")
                print(f"  {case} {variant}: {r['error']}", file=sys.stderr)
                continue
            rate = r["images_per_second"]
            base = base or (rate if variant == "fp32" else None)
            ratio = f" {rate / base:4.2f}x" if base else ""
            cells.append(f"{rate:7.1f}{ratio}")
        print(f"{case:24s}" + "".join(f"{c:>18s}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
