"""Which split and which shard a record goes to: a pure function of a stable key.

The key is the record's id (a hash of its image bytes, see ``record_id``) or, with
``--group_by=COLUMN``, the value of that column, so that every photo of one person lands in the
same split. Hashing the content rather than the path means renaming or moving the data set does
not reshuffle the splits, and exact duplicates cannot straddle two splits. Nothing here depends on
the runner, the worker count or the shard count, so a rerun puts every input where it was.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from preprocessing import schema

DEFAULT_RATIOS = (0.8, 0.1, 0.1)
# Aim for shards of ~128 MB, inside TFDS's recommended 100-200 MB, when --num_shards=0.
TARGET_SHARD_BYTES = 128 * 2**20


def record_id(image_bytes: bytes) -> str:
    """The stable id of an input: 32 hex digits of the SHA-256 of the original file's bytes."""
    return hashlib.sha256(image_bytes).hexdigest()[:32]


def unit_interval(key: str, salt: str) -> float:
    """A uniform number in [0, 1) determined by ``key`` alone (salted per use)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_key(record_id_: str, group_value: str | None) -> str:
    return record_id_ if group_value is None else "group:" + group_value


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


def auto_num_shards(num_bytes: int, target_bytes: int = TARGET_SHARD_BYTES) -> int:
    return max(1, math.ceil(num_bytes / target_bytes))
