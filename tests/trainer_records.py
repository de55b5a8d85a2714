"""Test helper: tiny preprocessing-style outputs (shards + stats.json) written with schema.encode.

Images carry a learnable age signal (brightness grows with age) and are JPEG-encoded at the
requested size, exactly like preprocessing's records.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from preprocessing import schema


def face_like(age: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 [size, size, 3] image whose brightness and a bar's length encode the age."""
    image = rng.integers(0, 40, (size, size, 3)).astype(np.float32)
    image += 150.0 * age / 100.0
    bar = max(1, int(size * min(age, 100) / 100))
    image[size // 2 - 2:size // 2 + 2, :bar, 0] = 255
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_dataset(out_dir, *, image_size: int = 32, counts=None, shards: int = 2,
                  max_age: int = 100, seed: int = 0) -> str:
    """Writes OUT/{split}-0000i-of-0000n shards and OUT/stats.json; returns OUT."""
    counts = counts or {"train": 64, "validation": 16}
    rng = np.random.default_rng(seed)
    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    stats = {"image_size": image_size, "extra_columns": [], "max_age": max_age, "splits": {}}
    for split, count in counts.items():
        ages = rng.uniform(1, 90, count).astype(np.float32)
        histogram = np.bincount(np.floor(ages).astype(int), minlength=max_age + 1)
        stats["splits"][split] = {"count": count, "num_shards": shards,
                                  "age_histogram": histogram.tolist()}
        writers = [tf.io.TFRecordWriter(os.path.join(out_dir, schema.shard_name(split, i, shards)))
                   for i in range(shards)]
        for i, age in enumerate(ages):
            record = {schema.IMAGE: jpeg(face_like(float(age), image_size, rng)),
                      schema.HEIGHT: image_size, schema.WIDTH: image_size,
                      schema.ORIGINAL_HEIGHT: image_size, schema.ORIGINAL_WIDTH: image_size,
                      schema.FILENAME: f"{split}_{i}.jpg", schema.AGE: float(age),
                      schema.ID: f"{split}-{i}", schema.BLUR: 100.0, schema.BRIGHTNESS: 0.5}
            writers[i % shards].write(schema.encode(record))
        for w in writers:
            w.close()
    with open(os.path.join(out_dir, schema.STATS_FILE), "w") as f:
        json.dump(stats, f)
    return out_dir
