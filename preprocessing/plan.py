"""PlanShards: label rows -> {split: number of shards}, decided before any image is read.

Why before: a record's shard is then known the moment its image is loaded, so the load stage can
spill it straight to its shard's fragment (fragments.py) and nothing waits for a count of the
final records. The counts are expectations (``split.expected_counts``): exact for fixed splits
and groups, the split ratios for hashed ids; stats.json reports what was actually written.
"""

from __future__ import annotations

import apache_beam as beam

from preprocessing import split


class _ExpectedCounts(beam.CombineFn):
    """Label rows -> expected records per split (``split.expected_counts`` summed)."""

    def __init__(self, ratios, group_by):
        self.ratios, self.group_by = tuple(ratios), group_by

    def create_accumulator(self):
        return {}

    def add_input(self, counts, row):
        group = row.group(self.group_by)
        if self.group_by is not None and group is None:
            return counts  # rejected for its empty group: adds to no split
        for name, n in split.expected_counts(row.split, group, self.ratios).items():
            counts[name] = counts.get(name, 0.0) + n
        return counts

    def merge_accumulators(self, accumulators):
        merged = {}
        for counts in accumulators:
            for name, n in counts.items():
                merged[name] = merged.get(name, 0.0) + n
        return merged

    def extract_output(self, counts):
        return counts


class PlanShards(beam.PTransform):
    """Label rows -> {split: number of shards}, decided before any image is read."""

    def __init__(self, ratios, group_by, num_shards: int, image_size: int):
        super().__init__()
        self.ratios, self.group_by = ratios, group_by
        self.num_shards, self.image_size = num_shards, image_size

    def expand(self, rows):
        return (rows
                | "ExpectedCounts" >> beam.CombineGlobally(_ExpectedCounts(self.ratios,
                                                                           self.group_by))
                | "NumShards" >> beam.Map(lambda counts: {
                    name: split.planned_num_shards(n, self.num_shards, self.image_size)
                    for name, n in counts.items()}))
