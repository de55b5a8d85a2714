"""Which split and which shard a record goes to: a pure function of a stable key.

The key is the record's id (a hash of its image bytes, ``record_id``) or, with
``--group_by=COLUMN``, that column's value, so every photo of one person lands in one split.
Hashing the content, not the path, keeps splits when the data set moves; nothing depends on the
runner, worker or shard count, so a rerun puts every input where it was. A split's shard count is
planned from the label rows before any image is read (plan.py), so a record goes straight to its
shard's fragment file; ``--num_shards=0`` sizes shards from an estimate of bytes per record, with
a floor of ``MIN_AUTO_SHARDS`` so multi-worker training has files for every worker.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from contract import schema

DEFAULT_RATIOS = (0.8, 0.1, 0.1)
# Aim for shards of ~128 MB, inside TFDS's recommended 100-200 MB, when --num_shards=0.
TARGET_SHARD_BYTES = 128 * 2**20
# ... but never fewer than this many shards per split (records permitting): a multi-worker
# trainer gives every worker whole files of each split it reads, so the shard count caps the
# worker count. 16 covers the usual pools (2-16 workers; Vertex AI's multi-worker examples use
# 2-4) for any split size, and costs little on a small data set: 16 files of a few MB each.
MIN_AUTO_SHARDS = 16
# One record's size, for planning only: measured on 500 UTKFace faces at JPEG quality 90, a record
# is ~1.3 KB of fields and headers plus 0.15-0.4 bytes per pixel (more for small images, q95
# adds ~40%). The planner takes the upper end so that shards come out at or under the target.
_RECORD_OVERHEAD_BYTES = 1400
_RECORD_BYTES_PER_PIXEL = 0.4


def record_id(image_bytes: bytes) -> str:
    """The stable id of an input: 32 hex digits of the SHA-256 of the original file's bytes."""
    return hashlib.sha256(image_bytes).hexdigest()[:32]


def unit_interval(key: str, salt: str) -> float:
    """A uniform number in [0, 1) determined by ``key`` alone (salted per use)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_key(record_id_: str, group_value: str | None) -> str:
    return record_id_ if group_value is None else "group:" + group_value


def choose_split(record_id_: str, fixed_split: str | None, group_value: str | None,
                 ratios: Sequence[float] = DEFAULT_RATIOS) -> str:
    """A record's split: the one its label source fixed (APPA-REAL), else by id or group."""
    if fixed_split is not None:
        return fixed_split
    return assign_split(split_key(record_id_, group_value), ratios)


def assign_split(key: str, ratios: Sequence[float] = DEFAULT_RATIOS,
                 names: Sequence[str] = schema.SPLITS) -> str:
    """The split whose cumulative-ratio interval contains the key's hash."""
    if len(ratios) != len(names):
        raise ValueError(f"{len(ratios)} ratios for {len(names)} splits")
    u = unit_interval(key, "split")
    edge = 0.0
    for name, ratio in zip(names, ratios, strict=True):
        edge += ratio
        if u < edge:
            return name
    # Float rounding can leave the last edge a hair under 1; the last non-empty split takes it.
    return next(n for n, r in zip(reversed(names), reversed(ratios), strict=True) if r > 0)


def shard_index(record_id_: str, num_shards: int) -> int:
    """The shard of a record within its split (a different salt from the split's hash)."""
    return min(num_shards - 1, int(unit_interval(record_id_, "shard") * num_shards))


def auto_num_shards(num_bytes: float, target_bytes: int = TARGET_SHARD_BYTES) -> int:
    return max(1, math.ceil(num_bytes / target_bytes))


def expected_counts(fixed_split: str | None, group_value: str | None,
                    ratios: Sequence[float] = DEFAULT_RATIOS,
                    names: Sequence[str] = schema.SPLITS) -> dict[str, float]:
    """What one label row adds to the expected size of each split, before its image is read.

    A fixed split or a group value decides the split from the row alone; otherwise the split
    comes from the image's hash, and the row adds its ratio to each split.
    """
    if fixed_split is not None or group_value is not None:
        return {choose_split("", fixed_split, group_value, ratios): 1.0}
    return {name: ratio for name, ratio in zip(names, ratios, strict=True) if ratio > 0}


def estimated_record_bytes(image_size: int) -> float:
    return _RECORD_OVERHEAD_BYTES + _RECORD_BYTES_PER_PIXEL * image_size * image_size


def planned_num_shards(expected_count: float, num_shards: int, image_size: int) -> int:
    """Shards for a split expected to hold ``expected_count`` records.

    --num_shards=0: by size (``TARGET_SHARD_BYTES``), at least ``MIN_AUTO_SHARDS``. Never more
    shards than expected records, so a tiny split is not a pile of empty files; a shard that
    hashing leaves empty is still written (TFDS expects every file of the template).
    """
    wanted = num_shards or max(MIN_AUTO_SHARDS, auto_num_shards(
        expected_count * estimated_record_bytes(image_size)))
    return max(1, min(wanted, math.ceil(expected_count)))
