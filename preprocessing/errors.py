"""Dead letters: every stage's rejects -> OUT/errors/errors.jsonl, and a counter per reason.

Each reject is a dict from ``labels.rejection`` (source, reason code from contract.reasons,
detail); the counters (``REJECTED`` + reason, in the job's namespace) give the console summary.
"""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.metrics import Metrics

from contract import files
from preprocessing import labels

REJECTED = "rejected_"  # counter name prefix


def _count_reason(reject, namespace: str):
    Metrics.counter(namespace, REJECTED + reject["reason"]).inc()
    return reject


def _write_errors(item, path: str) -> None:
    _, lines = item
    # Sorted: the same inputs give the same file, which diffs cleanly between runs.
    files.write_bytes(path, "".join(line + "\n" for line in sorted(lines)).encode("utf-8"),
                      "application/json")


class WriteErrors(beam.PTransform):
    """Reject dicts -> DIR/errors.jsonl, one JSON object per rejected input, sorted; counts
    reasons. One file from one worker: dead letters are few, and a single shuffle of small
    lines is three runner stages fewer than a sharded text sink."""

    def __init__(self, directory: str, namespace: str):
        super().__init__()
        self.directory, self.namespace = directory, namespace

    def expand(self, rejects):
        counted = rejects | "Count" >> beam.Map(_count_reason, self.namespace)
        _ = (counted
             | "ToJson" >> beam.Map(lambda r: (None, json.dumps(r, sort_keys=True)))
             | "Gather" >> beam.GroupByKey()
             | "Write" >> beam.Map(_write_errors, labels.join(self.directory, "errors.jsonl")))
        return counted
