"""Tiny datasets in preprocessing.run's output layout, written directly: no labels, no Beam job.

data_dir = fake_records.write_dataset(OUT, image_size=32, counts={"train": 64})

For tests and benchmarks that need records in a second: shards of ``schema.encode`` records and
stats.json, written with the pipeline's own helpers (``stats_assembly``, ``tfrecord_writer``) so
the layout cannot drift. Ages are uniform in [1, 90); blur and brightness are measured as the
pipeline does. Images (``draw``): ``signal_image``, noise whose brightness and a red bar grow
with age, which a tiny model learns in a few steps (trainer tests); ``drawn_face``, a
``synthetic_faces`` drawing whose JPEG size and decode cost are a real face crop's (benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image

from contract import schema
from contract import stats as stats_file
from imaging import images
from preprocessing import stats_assembly, synthetic_faces, tfrecord_writer

JPEG_QUALITY = 90
MIN_AGE, MAX_AGE = 1.0, 90.0  # ages are drawn uniformly from [MIN_AGE, MAX_AGE)

# (age, side, rng) -> uint8 [side, side, 3] pixels
Draw = Callable[[float, int, np.random.Generator], np.ndarray]


def signal_image(age: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 [size, size, 3] image whose brightness and a red bar's length encode the age."""
    image = rng.integers(0, 40, (size, size, 3)).astype(np.float32)
    image += 150.0 * age / 100.0
    bar = max(1, int(size * min(age, 100) / 100))
    image[size // 2 - 2:size // 2 + 2, :bar, 0] = 255
    return np.clip(image, 0, 255).astype(np.uint8)


def drawn_face(age: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 [size, size, 3] synthetic_faces drawing of a face of this age (either gender)."""
    params = synthetic_faces.sample_faces(rng, np.array([age]), rng.integers(0, 2, 1))
    return np.asarray(synthetic_faces.render_face(synthetic_faces.face_row(params, 0), size))


def record(pixels: np.ndarray, age: float, record_id: str) -> dict:
    """The schema record of an image drawn at its final size, measured like the pipeline's."""
    image = Image.fromarray(pixels)
    grey = np.asarray(image.convert("L"))
    height, width = pixels.shape[:2]
    return {schema.IMAGE: images.encode_jpeg(image, JPEG_QUALITY), schema.HEIGHT: height,
            schema.WIDTH: width, schema.ORIGINAL_HEIGHT: height, schema.ORIGINAL_WIDTH: width,
            schema.FILENAME: f"{record_id}.jpg", schema.AGE: float(age), schema.ID: record_id,
            schema.BLUR: images.blur_score(grey), schema.BRIGHTNESS: images.brightness(grey)}


def _check(counts: Mapping[str, int], image_size: int, shards: int) -> None:
    for split, count in counts.items():
        if split not in schema.SPLITS:
            raise ValueError(f"counts: {split!r} is not a split (one of {schema.SPLITS})")
        if not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"counts[{split!r}]={count!r}: must be a non-negative integer")
    for name, value in (("image_size", image_size), ("shards", shards)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r}: must be a positive integer")


def write_dataset(out_dir, *, image_size: int = 32, counts: Mapping[str, int] | None = None,
                  shards: int = 2, max_age: int = 100, seed: int = 0,
                  draw: Draw = signal_image) -> str:
    """Writes OUT/{split}-0000i-of-0000n shards and OUT/stats.json (local or gs://); returns OUT.

    ``counts`` maps split names to numbers of records (default: 64 train, 16 validation); record
    i of a split goes to shard i % shards. The same arguments give the same records.
    """
    counts = dict(counts or {"train": 64, "validation": 16})
    _check(counts, image_size, shards)
    out = str(out_dir)
    rng = np.random.default_rng(seed)
    summaries = []
    for split, count in counts.items():
        ages = rng.uniform(MIN_AGE, MAX_AGE, count).astype(np.float32)
        payloads = [[] for _ in range(shards)]
        for i, age in enumerate(ages):
            pixels = draw(float(age), image_size, rng)
            payloads[i % shards].append(schema.encode(record(pixels, age, f"{split}-{i}")))
        for index, payload in enumerate(payloads):
            path = f"{out.rstrip('/')}/{schema.shard_name(split, index, shards)}"
            num_bytes = tfrecord_writer.write_tfrecords(path, payload)
            summaries.append(stats_assembly.shard_summary(
                split, index, shards, ages[index::shards], num_bytes, max_age))
    # The pipeline's defaults for what this writer does not vary: the framing and the limits.
    stats_assembly.write_stats(out, stats_file.Stats.from_dict(
        {"image_size": image_size, "max_age": max_age, "jpeg_quality": JPEG_QUALITY,
         "splits": stats_assembly.split_stats(summaries, max_age)}, f"{out}/{stats_file.FILE}"))
    return out
