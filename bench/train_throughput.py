"""Trainer step throughput vs a bare model.fit on in-memory tensors, in the same run.

    python -m bench.train_throughput [--backbone mobilenet_v3_small] [--image_size 96]
        [--batch_size 64] [--steps 30] [--epochs 3]

Runs trainer.train.run on drawn synthetic records (fine-tuning stage only) and reads images/s per
epoch from history.json, then model.fit of the same model on one in-memory batch, repeated; epoch
1 (tracing) is left out of both. Two trainer figures: its training steps alone (like for like,
goal >= 0.95x bare) and its whole epoch (adding precise BN, validation and checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from contract import stats as stats_file  # noqa: E402
from preprocessing import fake_records  # noqa: E402
from trainer import train  # noqa: E402
from trainer.config import Config  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mobilenet_v3_small")
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100, help="steps per epoch")
    p.add_argument("--bn_recalibration_batches", type=int, default=50)
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="train_throughput_")
    fake_records.write_dataset(work, image_size=args.image_size, draw=fake_records.drawn_face,
                               counts={"train": args.batch_size * args.steps,
                                       "validation": args.batch_size})
    config = Config(data_dir=work, model_dir=work + "/model", backbone=args.backbone,
                    weights="none", batch_size=args.batch_size, epochs=args.epochs,
                    freeze_epochs=0, steps_per_epoch=args.steps, export=False, verbose=0,
                    distribution_strategy="one_device",
                    bn_recalibration_batches=args.bn_recalibration_batches)
    train.run(config)
    with open(work + "/model/history.json") as f:
        rows = json.load(f)
    step_rate = float(np.median([r["train_images_per_second"] for r in rows[1:]]))
    epoch_rate = float(np.median([r["images_per_second"] for r in rows[1:]]))

    strategy = tf.distribute.get_strategy()
    plan = train.make_plan(config, stats_file.read(work), 1)
    model = train.build(config, plan, strategy)
    train.compile_stage(model, config, plan, "fine_tune", args.epochs, strategy)
    n = args.batch_size * args.steps
    rng = np.random.default_rng(1)
    # One batch of in-memory tensors, repeated: the model's own step rate. (fit on numpy arrays of
    # the whole epoch measured 157 or 296 images/s from run to run: Keras slicing 0.7 GB of
    # float32 per epoch, not the model, set that baseline.)
    batch = (tf.constant(rng.uniform(0, 255, (args.batch_size, args.image_size,
                                              args.image_size, 3)), tf.float32),
             tf.constant(rng.uniform(1, 90, args.batch_size), tf.float32),
             tf.ones([args.batch_size], tf.float32))
    timer = EpochTimer()
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=args.steps,
              epochs=args.epochs, callbacks=[timer], verbose=0)
    bare_rate = float(np.median([n / s for s in timer.seconds[1:]]))
    print(f"backbone {args.backbone} at {args.image_size}px, batch {args.batch_size}, "
          f"{args.steps} steps/epoch, {os.cpu_count()} CPU cores")
    print(f"trainer, training steps (tf.data + augmentation + step):  {step_rate:7.1f} img/s")
    print(f"trainer, whole epoch (+ precise BN over {args.bn_recalibration_batches} batches, "
          f"validation, checkpoints): {epoch_rate:7.1f} img/s")
    print(f"bare model.fit on an in-memory batch, repeated:          {bare_rate:7.1f} img/s")
    print(f"ratio trainer steps / bare: {step_rate / bare_rate:.2f} (goal >= 0.95); "
          f"whole epoch / bare: {epoch_rate / bare_rate:.2f}")

if __name__ == "__main__":
    main()
