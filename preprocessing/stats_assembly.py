"""stats.json assembled from the pipeline's per-shard summaries, rejects and merges.

Each shard writer reports what it wrote (``shard_summary``); ``write_stats_from_parts`` sums
those per split and adds the run's settings, in the layout of ``contract.stats``. Pure apart
from the final write, so tests and ``fake_records`` build stats.json without a pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from contract import files, schema
from contract import stats as stats_file
from contract.files import join
from preprocessing import face_stage


def age_histogram(ages: Iterable[float], max_age: float) -> list[int]:
    """Counts of floor(age) for 0..max_age (``contract.stats.SplitStats.age_histogram``)."""
    counts = [0] * (int(max_age) + 1)
    for age in ages:
        counts[min(int(age), len(counts) - 1)] += 1
    return counts


def shard_summary(split: str, index: int, num_shards: int, ages: Iterable[float],
                  num_bytes: int, max_age: float) -> dict:
    """What one written shard adds to stats.json; ``split_stats`` sums them per split."""
    ages = list(ages)
    # The records hold float32 ages: sum those, so that mean_age is the mean a reader computes.
    age_sum = float(np.asarray(ages, np.float32).sum(dtype=np.float64))
    return {"split": split, "index": index, "num_shards": num_shards, "count": len(ages),
            "num_bytes": num_bytes, "age_histogram": age_histogram(ages, max_age),
            "age_sum": age_sum}


def split_stats(shards: Iterable[dict], max_age: float) -> dict:
    """stats.json's "splits": an entry for every split, summed over its shards' summaries."""
    width = int(max_age) + 1
    splits = {name: {"count": 0, "num_shards": 0, "num_bytes": 0, "shard_lengths": [],
                     "age_histogram": [0] * width} for name in schema.SPLITS}
    age_sums = dict.fromkeys(schema.SPLITS, 0.0)
    for shard in sorted(shards, key=lambda s: (s["split"], s["index"])):
        entry = splits[shard["split"]]
        entry["num_shards"] = shard["num_shards"]
        if not entry["shard_lengths"]:
            entry["shard_lengths"] = [0] * shard["num_shards"]
        entry["shard_lengths"][shard["index"]] = shard["count"]
        entry["count"] += shard["count"]
        entry["num_bytes"] += shard["num_bytes"]
        entry["age_histogram"] = [a + b for a, b in zip(entry["age_histogram"],
                                                        shard["age_histogram"], strict=True)]
        age_sums[shard["split"]] += shard["age_sum"]
    for name, entry in splits.items():
        # Exact, where the floor(age) histogram can only give the mean to within a year.
        entry["mean_age"] = age_sums[name] / entry["count"] if entry["count"] else None
    return splits


def write_stats_from_parts(_, directory, config, extra_columns, shards, reasons_, merged,
                           blur_deciles) -> None:
    """Assembles stats.json from the pipeline's per-shard summaries and the (reason, count)
    pairs of the rejects, and writes it to staging."""
    splits = split_stats(shards, config.max_age)
    rejects = dict(reasons_)  # (reason, count) pairs
    deciles = blur_deciles[0] if blur_deciles else []
    written = sum(s["count"] for s in splits.values())
    stats = {
        # The geometry of every record (export and evaluation must frame served faces alike)
        # and the limits the records passed (the exported model refuses what preprocessing
        # would): image_size, resize, margin, max_pixels, max_aspect_ratio.
        **config.image.framing.to_dict(),
        "extra_columns": list(extra_columns),
        "max_age": config.max_age,
        "splits": splits,
        "rejects": dict(sorted(rejects.items())),
        "duplicates_merged": sum(merged),
        # Every input is accounted for exactly once: written, rejected or merged into a copy.
        "inputs": written + sum(rejects.values()) + sum(merged),
        "blur_quantiles": ({f"{q / 10:.1f}": deciles[q] for q in (1, 5, 9)}
                           if len(deciles) == 11 else {}),
        "blur_deciles": list(deciles),
        "jpeg_quality": config.image.jpeg_quality,
        "label_format": config.label_format,
        "split_ratios": list(config.split_ratios),
        "group_by": config.group_by,
        "id": "first 32 hex digits of the SHA-256 of the original image file's bytes",
        "faces": face_stage.stats_entry(config, rejects, shards),
    }
    write_stats(directory, stats_file.Stats.from_dict(stats, join(directory, stats_file.FILE)))


def write_stats(directory: str, stats: stats_file.Stats) -> None:
    """DIRECTORY/stats.json (local or gs://), in the layout ``contract.stats`` reads."""
    files.write_bytes(join(directory, stats_file.FILE), stats.to_json().encode("utf-8"),
                      "application/json")
