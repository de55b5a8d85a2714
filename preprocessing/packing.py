"""Packing: a shuffle of many small (key, value) pairs that stays small in the runner and costs
one Beam element per batch, not per pair.

The DirectRunner holds every shuffled element in its own process, and copies each stage's input
three to four times on its way to a worker (partitioning, the send queue, gRPC), so any value
per input that crosses a shuffle makes the runner grow with the data set; and each element costs
Beam some microseconds wherever it goes. Here the stage that makes the pairs packs them into one
bytes batch per bucket (a stable hash of the key) and flush (Packer; Pack for pairs that are
already elements); with a ``spill_dir`` (the local runners) the batches go into one file per
flush and only their byte ranges cross the shuffle, a few per bucket whatever the data set's
size. Without one (Dataflow, whose shuffle lives outside the workers) the packed batches
themselves cross it. After a GroupByKey on the bucket, unpack_bucket gives GroupByKey's groups,
(key, [values]), for a consumer that works a whole bucket per call.
"""

from __future__ import annotations

import uuid
import zlib
from collections import defaultdict

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder
from apache_beam.transforms.window import GlobalWindows

from contract import files

# Buckets bound the parallelism after the shuffle (a bucket is one unit of work), so there are
# many more than workers; a worker flushes its batches after HELD pairs, bounding its memory.
NUM_BUCKETS = 1024
HELD = 20_000
_CODER = FastPrimitivesCoder()


def bucket(key) -> int:
    """Stable across processes and runs (Python's hash() of a str is not)."""
    data = key if isinstance(key, bytes) else str(key).encode("utf-8")
    return zlib.crc32(data) % NUM_BUCKETS


class Packer:
    """(key, value) pairs -> [(bucket, packed batch or its byte range)], flushed every HELD
    pairs. Plain Python, so that a DoFn that makes the pairs can pack them itself (one Beam
    element per batch instead of one per pair): _Pack, and the label reader."""

    def __init__(self, spill_dir: str | None):
        self.spill_dir = spill_dir
        self.batches, self.held = defaultdict(list), 0

    def add(self, key, value) -> list:
        self.batches[bucket(key)].append((key, value))
        self.held += 1
        return self.flush() if self.held >= HELD else []

    def flush(self) -> list:
        packed = [(b, _CODER.encode(pairs)) for b, pairs in sorted(self.batches.items())]
        self.batches, self.held = defaultdict(list), 0
        if self.spill_dir is None or not packed:
            return packed
        # Like a file sink's temporary files: a retried bundle writes a new, uniquely named file.
        path = files.join(self.spill_dir, f"{uuid.uuid4().hex}.pairs")
        files.write_bytes(path, b"".join(data for _, data in packed))
        ranges, offset = [], 0
        for b, data in packed:
            ranges.append((b, (path, offset, len(data))))
            offset += len(data)
        return ranges


class _Pack(beam.DoFn):
    def __init__(self, spill_dir: str | None):
        self.spill_dir = spill_dir

    def start_bundle(self):
        self.packer = Packer(self.spill_dir)

    def process(self, pair):
        yield from self.packer.add(*pair)

    def finish_bundle(self):
        for packed in self.packer.flush():
            yield GlobalWindows.windowed_value(packed)


def encode(value) -> bytes:
    """Plain data (tuples, lists, dicts, str, numbers) -> bytes, with Beam's own fast coder."""
    return _CODER.encode(value)


def decode(data: bytes):
    return _CODER.decode(data)


def unpack(batches) -> list:
    """Packed batches of one bucket -> [(key, [values])], keys in first-seen order."""
    grouped = defaultdict(list)
    for batch in batches:
        for key, value in _CODER.decode(batch):
            grouped[key].append(value)
    return list(grouped.items())


def unpack_bucket(item) -> list:
    """(bucket, [packed batches or their byte ranges]) after the shuffle -> [(key, [values])]:
    GroupByKey's groups, for a consumer that works a whole bucket per call."""
    return unpack([files.read_range(*b) if isinstance(b, tuple) else b for b in item[1]])


class Pack(beam.PTransform):
    """(key, value) pairs -> (bucket, packed batch or its byte range) pairs, for a GroupByKey
    and then unpack_bucket. ``spill_dir``: see the module's docstring."""

    def __init__(self, spill_dir: str | None = None):
        super().__init__()
        self.spill_dir = spill_dir

    def expand(self, pairs):
        return pairs | "Pack" >> beam.ParDo(_Pack(self.spill_dir))
