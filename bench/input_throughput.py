"""Input pipeline throughput vs the model's training rate, on this machine's CPU cores.

    python -m bench.input_throughput [--image_size 96] [--backbone mobilenet_v3_small]

1. Writes --num_records synthetic face-like JPEG records (preprocessing.schema) to --work_dir.
2. Measures images/s out of trainer.data.build_dataset (read + parse + decode + augment + batch),
   for the pipeline's default augmentation, no augmentation, and - for comparison - Keras
   augmentation layers mapped over the same batches.
3. Measures, in the same run, the training rate of a bare tf.function loop of the backbone
   (weights=None, include_top=False, average pooling + Dense(1)) on in-memory tensors.
Prints each figure and the ratio input/training (the goal is >= 10x, so that input preparation
never limits training even when other work shares the cores).
"""

from __future__ import annotations

import argparse
import io
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from preprocessing import schema  # noqa: E402
from trainer import data  # noqa: E402
from trainer.augment import AugmentConfig  # noqa: E402

BACKBONES = {
    "mobilenet_v3_small": keras.applications.MobileNetV3Small,
    "mobilenet_v3_large": keras.applications.MobileNetV3Large,
    "efficientnet_b0": keras.applications.EfficientNetB0,
    "resnet50": keras.applications.ResNet50,
}


def synthetic_face(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth face-like drawing, so JPEGs have the size and decode cost of real face crops."""
    bg = tuple(int(v) for v in rng.integers(40, 220, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    skin = tuple(int(v) for v in rng.integers(90, 240, 3))
    m = size // 8
    draw.ellipse([m, m // 2, size - m, size - m // 2], fill=skin)
    for ex in (0.35, 0.65):  # eyes
        x, y, r = ex * size, 0.42 * size, size / 20
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(30, 30, 30))
    draw.line([0.35 * size, 0.72 * size, 0.65 * size, 0.72 * size], fill=(120, 40, 40),
              width=max(1, size // 32))
    img = img.filter(ImageFilter.GaussianBlur(size / 96))
    noise = rng.normal(0, 6, (size, size, 3))  # skin/sensor texture: JPEGs of a realistic size
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def write_records(work_dir: str, num_records: int, image_size: int, num_shards: int) -> float:
    """Writes train shards; returns the mean JPEG size in bytes."""
    os.makedirs(work_dir, exist_ok=True)
    for old in tf.io.gfile.glob(os.path.join(work_dir, "*")):
        tf.io.gfile.remove(old)
    rng = np.random.default_rng(0)
    total = 0
    for shard in range(num_shards):
        path = os.path.join(work_dir, schema.shard_name("train", shard, num_shards))
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(shard, num_records, num_shards):
                buf = io.BytesIO()
                synthetic_face(rng, image_size).save(buf, "JPEG", quality=90)
                total += buf.tell()
                writer.write(schema.encode({
                    schema.IMAGE: buf.getvalue(), schema.HEIGHT: image_size,
                    schema.WIDTH: image_size, schema.ORIGINAL_HEIGHT: image_size,
                    schema.ORIGINAL_WIDTH: image_size, schema.FILENAME: f"synthetic_{i}.jpg",
                    schema.AGE: float(rng.uniform(1, 90)), schema.ID: str(i),
                    schema.BLUR: 100.0, schema.BRIGHTNESS: 120.0}))
    return total / num_records


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
    mean_bytes = write_records(args.work_dir, args.num_records, args.image_size, args.num_shards)
    print(f"wrote {args.num_records} records in {args.num_shards} shards to {args.work_dir} "
          f"(mean JPEG {mean_bytes / 1024:.1f} KiB)")

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
