"""Input pipeline throughput vs the model's training rate, on this machine's CPU cores.

    python -m bench.input_throughput [--image_size 96] [--backbone mobilenet_v3_small]

Writes drawn synthetic faces as records (preprocessing.fake_records), then measures images/s out
of trainer.data.build_dataset with the default augmentation, with none, and with Keras
augmentation layers for comparison; in the same run, a bare tf.function training loop of the
backbone on in-memory tensors. Prints each figure and the ratio input/training (goal >= 10x, so
that input preparation never limits training, even when other work shares the cores).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from contract import stats as stats_file  # noqa: E402
from preprocessing import fake_records  # noqa: E402
from trainer import data  # noqa: E402
from trainer.augment import AugmentConfig  # noqa: E402

BACKBONES = {
    "mobilenet_v3_small": keras.applications.MobileNetV3Small,
    "mobilenet_v3_large": keras.applications.MobileNetV3Large,
    "efficientnet_b0": keras.applications.EfficientNetB0,
    "resnet50": keras.applications.ResNet50,
}


def images_per_second(ds: tf.data.Dataset, batch_size: int, warmup: int, batches: int) -> float:
    it = iter(ds)
    for _ in range(warmup):  # fills the prefetch/shuffle buffers and lets AUTOTUNE settle
        next(it)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return batches * batch_size / wall, 1e3 * cpu / (batches * batch_size)


def keras_layers_variant(ds: tf.data.Dataset, image_size: int, seed: int) -> tf.data.Dataset:
    """The same magnitudes as AugmentConfig.default(), as Keras layers over batches."""
    cfg = AugmentConfig.default()
    layers = keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomTranslation(cfg.max_shift, cfg.max_shift, seed=seed),
        keras.layers.RandomZoom(cfg.max_zoom, seed=seed),
        keras.layers.RandomRotation(cfg.max_rotation / 360.0, seed=seed),
        keras.layers.RandomBrightness(cfg.brightness, value_range=(0, 255), seed=seed),
        keras.layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed),
    ])
    layers.build((None, image_size, image_size, 3))
    return ds.map(lambda x, y, w: (layers(x, training=True), y, w),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def training_rate(backbone: str, image_size: int, batch_size: int, steps: int) -> float:
    """Images/s of a bare GradientTape loop on in-memory tensors (no input pipeline at all)."""
    base = BACKBONES[backbone](input_shape=(image_size, image_size, 3), weights=None,
                               include_top=False, pooling="avg")
    model = keras.Sequential([base, keras.layers.Dense(1)])
    optimizer = keras.optimizers.Adam(1e-3)
    images = tf.random.uniform([batch_size, image_size, image_size, 3], 0, 255, seed=0)
    ages = tf.random.uniform([batch_size, 1], 1, 90, seed=1)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(model(x, training=True) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for _ in range(3):  # trace + warm up
        step(images, ages)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = step(images, ages)
    float(loss)  # wait for the last step
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return steps * batch_size / wall, 1e3 * cpu / (steps * batch_size)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="mobilenet_v3_small")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_records", type=int, default=4000)
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument("--input_batches", type=int, default=150,
                        help="timed batches per input variant")
    parser.add_argument("--train_steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--work_dir", default="/tmp/face_age_bench_input")
    parser.add_argument("--skip_keras_layers", action="store_true",
                        help="do not time the Keras-augmentation-layers comparison")
    args = parser.parse_args(argv)

    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
          f"tensorflow {tf.__version__}, image {args.image_size}px, batch {args.batch_size}")
    os.makedirs(args.work_dir, exist_ok=True)
    for old in tf.io.gfile.glob(os.path.join(args.work_dir, "*")):  # an earlier run's shards
        tf.io.gfile.remove(old)
    fake_records.write_dataset(args.work_dir, image_size=args.image_size,
                               counts={"train": args.num_records}, shards=args.num_shards,
                               draw=fake_records.drawn_face)
    written = stats_file.read(args.work_dir).splits["train"]
    print(f"wrote {args.num_records} records in {args.num_shards} shards to {args.work_dir} "
          f"(mean record {written['num_bytes'] / written['count'] / 1024:.1f} KiB)")

    def pipeline(augment):
        return data.build_dataset(args.work_dir, "train", batch_size=args.batch_size,
                                  image_size=args.image_size, training=True, augment=augment,
                                  age_weights=np.ones(121), seed=0)

    timing = dict(batch_size=args.batch_size, warmup=10, batches=args.input_batches)
    rates = {"build_dataset, AugmentConfig.default()": images_per_second(
        pipeline(AugmentConfig.default()), **timing)}
    rates["build_dataset, no augmentation"] = images_per_second(pipeline(None), **timing)
    if not args.skip_keras_layers:
        rates["build_dataset + Keras augmentation layers"] = images_per_second(
            keras_layers_variant(pipeline(None), args.image_size, seed=0), **timing)
    for name, (rate, cpu_ms) in rates.items():
        print(f"input  {name:<45s} {rate:8.0f} images/s  ({cpu_ms:.3f} CPU-ms/image)")

    train, train_cpu_ms = training_rate(args.backbone, args.image_size, args.batch_size,
                                        args.train_steps)
    print(f"train  {args.backbone + ' bare loop, in-memory tensors':<45s} {train:8.0f} images/s  "
          f"({train_cpu_ms:.3f} CPU-ms/image)")
    rate, cpu_ms = rates["build_dataset, AugmentConfig.default()"]
    ratio = rate / train
    verdict = "meets" if ratio >= 10 else "BELOW"
    print(f"ratio  input (default augmentation) / training = {ratio:.1f}x ({verdict} the 10x goal)")
    # Other processes sharing the cores move both wall-clock rates from run to run; CPU time per
    # image is what each stage costs, so its ratio is the figure to compare between runs.
    print(f"ratio  of CPU cost per image, training / input = {train_cpu_ms / cpu_ms:.1f}x")


if __name__ == "__main__":
    main()
