"""The final swap: staged shards checked against the run's stats.json, then moved into OUT.

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
All file IO goes through contract.files, so OUT may be local or gs://.
"""

from __future__ import annotations

import dataclasses
import os

from contract import files, schema
from contract import stats as stats_file
from contract.files import join
from preprocessing import stats_assembly, tfds_metadata, tfrecord_writer

STAGING_DIR = ".staging"


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
                empty = join(staging, schema.shard_name(name, index, entry["num_shards"]))
                tfrecord_writer.write_tfrecords(empty, [])
    shards = verify_staged(staging, stats)
    files.delete([join(output_dir, n) for n in (schema.STATS_FILE, *tfds_metadata.FILES)])
    files.delete(files.matching(join(output_dir, schema.SHARD_GLOB.format(split=s))
                                for s in schema.SPLITS))
    files.remove_tree(join(output_dir, schema.ERRORS_DIR))
    errors = files.matching([join(staging, schema.ERRORS_DIR) + "/*.jsonl"])
    files.mkdirs(join(output_dir, schema.ERRORS_DIR))
    files.move(shards + errors,
               [join(output_dir, os.path.basename(p)) for p in shards]
               + [join(output_dir, schema.ERRORS_DIR, os.path.basename(p)) for p in errors])

    published = dataclasses.replace(staged, tfds_metadata=tfds_metadata.write_tfds_metadata(
        output_dir, stats, image_size, extra_columns))
    stats_assembly.write_stats(output_dir, published)
    files.remove_tree(staging)
    return published


def verify_staged(staging: str, stats: dict) -> list[str]:
    """The staged shard paths, checked against stats.json: exactly the shards it names, with
    the bytes it counts per split; else StagingError (nothing in OUT is touched yet)."""
    found = files.sizes(join(staging, schema.SHARD_GLOB.format(split=s)) for s in schema.SPLITS)
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
