"""A smaller-training-set copy of a preprocessed DATA_DIR, for the small-data (overfitting) study.

    python -m experiments.subset_data --data_dir=DATA --output_dir=SMALL --train_fraction=0.1

Keeps an evenly spread ``train_fraction`` of the training records (see ``keep``), writes them
into as many train shards as before, links the validation and test shards unchanged (the runs are
scored on the same faces) and rewrites stats.json with the subset's count and age histogram,
which the trainer reads for steps per epoch and sample weights. The trainer has no train-fraction
flag; this keeps that concern out of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from fractions import Fraction

import numpy as np
import tensorflow as tf

from contract import schema
from contract import stats as stats_file
from trainer import data


def keep(index: int, fraction: float) -> bool:
    """Whether record ``index`` is in the subset: exactly floor(n * fraction) of the first n are.

    The fraction is taken as the decimal the user typed (0.1 is 1/10, not the binary float
    just above it), so the count cannot drift by one on a rounding error. Kept records are spread
    over the sorted shards, not the first ones: shards may be in label order (UTKFace's labels
    start with the age). A stride of round(1/f) would keep 100% for f=0.7 and 50% for f=0.4.
    """
    f = Fraction(str(float(fraction)))
    return math.floor((index + 1) * f) > math.floor(index * f)


def subset(data_dir: str, output_dir: str, train_fraction: float) -> stats_file.Stats:
    """Writes the subset DATA_DIR; returns its stats.json."""
    if not 0 < train_fraction <= 1:
        raise ValueError(f"--train_fraction={train_fraction}: must be in (0, 1]")
    stats = stats_file.read(data_dir)
    tf.io.gfile.makedirs(output_dir)
    out = output_dir.rstrip("/")
    max_age = int(stats.max_age) or 120
    histogram = np.zeros(max_age + 1, np.int64)
    kept = seen = 0
    files = data.list_files(data_dir, "train")
    # As many shards as the source: multi-worker training needs a file per worker.
    writers = [tf.io.TFRecordWriter(f"{out}/{schema.shard_name('train', i, len(files))}")
               for i in range(len(files))]
    for seen, serialized in enumerate(tf.data.TFRecordDataset(files), start=1):
        if not keep(seen - 1, train_fraction):
            continue
        age = float(schema.parse(serialized)[schema.AGE])
        histogram[min(int(age), max_age)] += 1
        writers[kept % len(writers)].write(serialized.numpy())
        kept += 1
    for writer in writers:
        writer.close()
    if kept == 0:
        raise ValueError(f"--train_fraction={train_fraction} keeps none of the {seen} training "
                         f"records in {data_dir!r}")
    for split in ("validation", "test"):
        for path in data.list_files(data_dir, split):
            _link_or_copy(path, f"{out}/{path.rsplit('/', 1)[-1]}")
    train = stats_file.SplitStats(count=kept, num_shards=len(files),
                                  age_histogram=tuple(histogram.tolist()))
    stats = dataclasses.replace(stats, splits={**stats.splits, "train": train}, subset_of={
        "data_dir": data_dir, "train_fraction": train_fraction})
    with tf.io.gfile.GFile(f"{out}/{stats_file.FILE}", "w") as f:
        f.write(stats.to_json())
    return stats


def _link_or_copy(src: str, dst: str) -> None:
    if tf.io.gfile.exists(dst):
        tf.io.gfile.remove(dst)
    if "://" in src or "://" in dst:
        tf.io.gfile.copy(src, dst)
    else:
        try:
            os.symlink(os.path.abspath(src), dst)
        except OSError:  # file systems without symlinks
            shutil.copyfile(src, dst)


def main(argv):
    del argv
    from absl import flags

    f = flags.FLAGS
    stats = subset(f.data_dir, f.output_dir, f.train_fraction)
    print(json.dumps({"train_count": stats.splits["train"].count, **stats.subset_of}))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("data_dir", None, "Output directory of preprocessing.run.")
    flags.DEFINE_string("output_dir", None, "Where the subset DATA_DIR goes.")
    flags.DEFINE_float("train_fraction", 0.1, "Share of the training records to keep.")
    flags.mark_flags_as_required(["data_dir", "output_dir"])
    app.run(main)
