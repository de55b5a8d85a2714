"""The label stage: label files -> rows packed by file name for the load stage, expected records
per split for the shard plan, and dead letters for rows that were not understood.

Rows never travel one per Beam element: the reader packs them by file-name bucket as it parses
(packing.Packer). With one element per row, Beam's cost per element was about four times the
parsing's, paid by the one worker that reads a label file while the other waits.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from contract import reasons
from preprocessing import labels, packing, split
from preprocessing import plan as shard_plan
from preprocessing.dead_letters import NAMESPACE, REJECTS, rejection

COUNTS = "counts"


def row_key(row: labels.LabelRow):
    """A label row -> (file name, its fields as a plain tuple): Beam's fast coder encodes
    plain tuples without pickling them."""
    return row.file_name, (row.file_name, row.age, row.source, row.extra, row.split)


class _ReadSource(beam.DoFn):
    """A label source -> its rows packed by file-name bucket (packing.Packer), its expected
    records per split (plan.ExpectedCounts) and rejects."""

    def __init__(self, max_age: float, ratios, group_by, spill_dir: str | None):
        self.max_age, self.ratios, self.group_by = max_age, tuple(ratios), group_by
        self.spill_dir = spill_dir
        self.read = Metrics.counter(NAMESPACE, "read")

    def process(self, unit):
        count = 0
        packer = packing.Packer(self.spill_dir)
        expected = shard_plan.ExpectedCounts(self.ratios, self.group_by)
        try:  # streamed: the label file is never held whole
            for item in labels.iter_source(unit, self.max_age):
                count += 1
                if isinstance(item, dict):
                    yield TaggedOutput(REJECTS, item)
                    continue
                expected.add(item)
                yield from packer.add(*row_key(item))
        except labels.LabelError as e:
            yield TaggedOutput(REJECTS, rejection(unit[1], reasons.BAD_ROW, str(e)))
        yield from packer.flush()
        yield TaggedOutput(COUNTS, expected.counts)
        self.read.inc(count)


class ReadLabels(beam.PTransform):
    """Label files (or the image listing) -> (label rows packed by file-name bucket, for
    LoadImages; {split: expected records} per source, for PlanShards; reject dicts).
    ``spill_dir``: see packing.Packer."""

    def __init__(self, label_format: str, labels_path: str | None, images_dir: str,
                 max_age: float, ratios=split.DEFAULT_RATIOS, group_by: str | None = None,
                 spill_dir: str | None = None):
        super().__init__()
        self.units = labels.sources(label_format, labels_path, images_dir)
        self.read = _ReadSource(max_age, ratios, group_by, spill_dir)

    def expand(self, pbegin):
        out = (pbegin
               | "ListSources" >> beam.Create(self.units)
               | "Parse" >> beam.ParDo(self.read).with_outputs(REJECTS, COUNTS, main="rows"))
        return out.rows, out[COUNTS], out[REJECTS]
