"""Dead letters: one line of OUT/errors/errors.jsonl per rejected input, with its reason."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.metrics import Metrics

from contract import files, reasons

NAMESPACE = "preprocessing"  # the job's Beam counters (pipeline.summary_line reads them)
REJECTS = "rejects"  # the tagged output each stage sends its dead letters to


def rejection(input_: str, reason: str, detail: str, file_name: str | None = None) -> dict:
    """One dead-letter line: which input, which reason code, and a message for a human.

    ``file_name`` (relative to --images) is added whenever the input names an image, so that
    errors/ can be joined back to the label file.
    """
    if reason not in reasons.ALL:
        raise ValueError(f"unknown rejection reason {reason!r}")
    line = {"input": input_, "reason": reason, "detail": detail}
    if file_name is not None:
        line["file_name"] = file_name
    return line


def to_line(reject: dict) -> str:
    """The record as one JSON line, keys sorted."""
    return json.dumps(reject, sort_keys=True)


def write_lines(path: str, lines) -> None:
    # Sorted: the same inputs give the same file, which diffs cleanly between runs.
    files.write_bytes(path, "".join(line + "\n" for line in sorted(lines)).encode("utf-8"),
                      "application/json")


REJECTED = "rejected_"  # counter name prefix


def _count_reason(reject, namespace: str):
    Metrics.counter(namespace, REJECTED + reject["reason"]).inc()
    return reject


def _write_errors(item, path: str) -> None:
    write_lines(path, item[1])


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
             | "ToJson" >> beam.Map(lambda r: (None, to_line(r)))
             | "Gather" >> beam.GroupByKey()
             | "Write" >> beam.Map(_write_errors, files.join(self.directory, "errors.jsonl")))
        return counted
