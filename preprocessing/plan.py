"""PlanShards: expected records per split (counted while the labels are parsed) -> {split:
number of shards}, decided before any image is read.

Why before: a record's shard is then known the moment its image is loaded, so the load stage can
spill it straight to its shard's fragment (fragments.py) and nothing waits for a count of the
final records. The counts are expectations (``split.expected_counts``): exact for fixed splits
and groups, the split ratios for hashed ids; stats.json reports what was actually written.
"""

from __future__ import annotations

import apache_beam as beam

from preprocessing import split


class ExpectedCounts:
    """Label rows -> expected records per split (``split.expected_counts`` summed). Plain
    Python: the label reader counts its rows as it parses them, and only the counts (a few
    numbers per label file) reach PlanShards."""

    def __init__(self, ratios, group_by):
        self.ratios, self.group_by = tuple(ratios), group_by
        self.counts: dict[str, float] = {}

    def add(self, row) -> None:
        group = row.group(self.group_by)
        if self.group_by is not None and group is None:
            return  # rejected for its empty group: adds to no split
        for name, n in split.expected_counts(row.split, group, self.ratios).items():
            self.counts[name] = self.counts.get(name, 0.0) + n


def merge_counts(counts) -> dict:
    """Several {split: expected records} -> their sum (associative: a CombineGlobally fn)."""
    merged: dict[str, float] = {}
    for one in counts:
        for name, n in one.items():
            merged[name] = merged.get(name, 0.0) + n
    return merged


class PlanShards(beam.PTransform):
    """{split: expected records} per label source -> {split: number of shards}, decided before
    any image is read."""

    def __init__(self, num_shards: int, image_size: int):
        super().__init__()
        self.num_shards, self.image_size = num_shards, image_size

    def expand(self, counts):
        return (counts
                | "ExpectedCounts" >> beam.CombineGlobally(merge_counts)
                | "NumShards" >> beam.Map(lambda counts: {
                    name: split.planned_num_shards(n, self.num_shards, self.image_size)
                    for name, n in counts.items()}))
