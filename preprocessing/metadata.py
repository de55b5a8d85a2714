"""Files around the shards: TFRecord framing, stats.json, TFDS metadata, and the final swap.

Why a staging folder and a swap: the pipeline writes shards, errors and stats.json into the
run's own ``OUT/.staging/RUN_ID`` (OUT is locked by the run: lock.py); only after the whole
pipeline succeeded, and every staged shard matches the run's stats.json (names and bytes), does
``publish`` replace the previous run's files in OUT. The order of ``publish`` is what makes an
interrupted run safe:

1. delete OUT/stats.json and the TFDS metadata first: from now on OUT reads as "incomplete"
   (``contract.stats.read`` and ``tfds.builder_from_directory`` fail with a clear error) instead
   of silently mixing two runs;
2. delete every old ``{split}-*-of-*`` shard and the old errors/;
3. move the new shards and errors in;
4. write the TFDS metadata, then stats.json last: its presence marks a complete output.

A rerun after an interruption at any point starts by deleting the stale staging folder and
redoes the job from the inputs, so no shard of an earlier run can survive into a later one.
All file IO goes through Beam's FileSystems (contract.files), so OUT may be local or gs://.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Iterable

import numpy as np
from apache_beam.io.filesystems import FileSystems

from contract import files, schema
from contract import stats as stats_file
from preprocessing import face_stage
from preprocessing.labels import join

STAGING_DIR = ".staging"
_DATASET_INFO, _FEATURES = _TFDS_FILES = ("dataset_info.json", "features.json")


def _masked_crc32c(data: bytes) -> int:
    import google_crc32c  # ships with google-cloud-storage, a dependency of this package

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frames(payloads: Iterable[bytes]) -> bytes:
    """The TFRecord container: per record, length + crc(length) + data + crc(data)."""
    parts = []
    for payload in payloads:
        length = struct.pack("<Q", len(payload))
        parts += [length, struct.pack("<I", _masked_crc32c(length)), payload,
                  struct.pack("<I", _masked_crc32c(payload))]
    return b"".join(parts)


def write_tfrecords(path: str, payloads: Iterable[bytes]) -> int:
    """Writes one shard (local or gs://); returns its size in bytes."""
    return write_frames(path, [tfrecord_frames(payloads)])


def write_frames(path: str, frames: Iterable[bytes]) -> int:
    """Writes already framed records (``tfrecord_frames``) as one file; returns its size."""
    return files.write_bytes(path, b"".join(frames))


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
    """Assembles stats.json from the pipeline's per-shard summaries and writes it to staging."""
    splits = split_stats(shards, config.max_age)
    rejects: dict[str, int] = {}
    for reason in reasons_:
        rejects[reason] = rejects.get(reason, 0) + 1
    deciles = blur_deciles[0] if blur_deciles else []
    written = sum(s["count"] for s in splits.values())
    stats = {
        "image_size": config.image.image_size,
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
        # The geometry of every record: export and evaluation must frame served faces alike.
        "resize": config.image.resize,
        "margin": config.image.margin,
        # The limits the records passed: the exported model refuses what preprocessing would.
        "max_pixels": config.image.max_pixels,
        "max_aspect_ratio": config.image.max_aspect_ratio,
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


class StagingError(RuntimeError):
    """The staged shards are not the ones the run's stats.json describes."""


def publish(staging: str, output_dir: str, image_size: int,
            extra_columns) -> stats_file.Stats:
    """Replaces OUT's previous output with the staged one (order: see the module docstring)."""
    staged = stats_file.read(staging)
    stats = staged.to_dict()
    for name, entry in stats["splits"].items():
        for index, count in enumerate(entry["shard_lengths"]):
            if count == 0:  # hashing left this shard empty; TFDS still expects the file
                write_tfrecords(join(staging, schema.shard_name(name, index, entry["num_shards"])),
                                [])
    shards = verify_staged(staging, stats)
    files.delete([join(output_dir, n) for n in (schema.STATS_FILE, *_TFDS_FILES)])
    files.delete(files.matching(join(output_dir, schema.SHARD_GLOB.format(split=s))
                                for s in schema.SPLITS))
    files.remove_tree(join(output_dir, schema.ERRORS_DIR))
    errors = files.matching([join(staging, schema.ERRORS_DIR) + "/*.jsonl"])
    files.mkdirs(join(output_dir, schema.ERRORS_DIR))
    FileSystems.rename(shards + errors,
                       [join(output_dir, os.path.basename(p)) for p in shards]
                       + [join(output_dir, schema.ERRORS_DIR, os.path.basename(p))
                          for p in errors])

    published = dataclasses.replace(staged, tfds_metadata=write_tfds_metadata(
        output_dir, stats, image_size, extra_columns))
    write_stats(output_dir, published)
    files.remove_tree(staging)
    return published


def verify_staged(staging: str, stats: dict) -> list[str]:
    """The staged shard paths, checked against stats.json: exactly the shards it names, with
    the bytes it counts per split; else StagingError (nothing in OUT is touched yet)."""
    found = {}
    for result in FileSystems.match([join(staging, schema.SHARD_GLOB.format(split=s))
                                     for s in schema.SPLITS]):
        found.update({m.path: m.size_in_bytes for m in result.metadata_list})
    sizes = {os.path.basename(p): n for p, n in found.items()}
    for name, entry in stats["splits"].items():
        expected = {schema.shard_name(name, i, entry["num_shards"])
                    for i in range(entry["num_shards"])}
        mine = {p: n for p, n in sizes.items() if p.startswith(name + "-")}
        if set(mine) != expected or sum(mine.values()) != entry["num_bytes"]:
            raise StagingError(
                f"{staging}: the {name} shards do not match its stats.json (missing "
                f"{sorted(expected - set(mine))}, unexpected {sorted(set(mine) - expected)}, "
                f"{sum(mine.values())} bytes, expected {entry['num_bytes']}); nothing was "
                "published: run the job again")
    return sorted(found)


def write_tfds_metadata(output_dir: str, stats: dict, image_size: int, extra_columns) -> str:
    """dataset_info.json + features.json so that tfds.builder_from_directory(OUT) loads it.

    Both are written as plain JSON through FileSystems: no TensorFlow import (~2 s of the job's
    fixed cost), and OUT may be gs:// (TFDS writes through tf.io.gfile, whose GCS client ignores
    STORAGE_EMULATOR_HOST). tests/test_tfds_metadata.py pins both files to what TFDS writes.
    """
    if not any(s["count"] for s in stats["splits"].values()):
        return "skipped: no records"
    # tfds.folder_dataset.write_metadata would be the one-liner here, but TFDS 4.9 infers the
    # file format from a ".tfrecord" part of the shard names, and schema.FILENAME_TEMPLATE
    # ("{SPLIT}-{SHARD_X_OF_Y}") has none, so it raises "Unrecognized file extension"; it would
    # also bring back the TensorFlow import and tf.io.gfile. These are the two files its
    # DatasetInfo.write_to_directory writes, with the format stated instead of inferred:
    # dataset_info.json is the DatasetInfo proto as JSON, in which int64 fields (numBytes,
    # shardLengths) are strings.
    info = {
        "name": "face_age",
        "version": "1.0.0",
        "description": "Face images with age labels, written by preprocessing.run.",
        "fileFormat": "tfrecord",
        "splits": [{"name": name, "filepathTemplate": schema.FILENAME_TEMPLATE,
                    "numBytes": str(s["num_bytes"]),
                    "shardLengths": [str(n) for n in s["shard_lengths"]]}
                   for name, s in stats["splits"].items() if s["count"]],
    }
    files.write_json(join(output_dir, _FEATURES),
                     schema.tfds_features_json(image_size, extra_columns, bool(stats.get("faces"))))
    files.write_json(join(output_dir, _DATASET_INFO), info)
    return "written"
