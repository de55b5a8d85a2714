"""GroupByBucket: a GroupByKey for many small (key, value) pairs that stays small in the runner.

The DirectRunner holds every shuffled element in its own process, and copies each stage's input
three to four times on its way to a worker (partitioning, the send queue, gRPC), so any value
per input that crosses a shuffle makes the runner grow with the data set. Here each worker packs
its pairs into one bytes batch per bucket (a stable hash of the key) and flush; with a
``spill_dir`` (the local runners) the batches go into one file per flush and only their byte
ranges cross the shuffle, a few per bucket whatever the data set's size. Without one (Dataflow,
whose shuffle lives outside the workers) the packed batches themselves cross it. The grouping by
key happens after the shuffle, per bucket. The output is GroupByKey's: (key, [values]).
PackByBucket stops before that last step, for a consumer that works a whole bucket per call.
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


class _Pack(beam.DoFn):
    def __init__(self, spill_dir: str | None):
        self.spill_dir = spill_dir

    def start_bundle(self):
        self.batches, self.held = defaultdict(list), 0

    def process(self, pair):
        self.batches[bucket(pair[0])].append(pair)
        self.held += 1
        if self.held >= HELD:
            yield from self._flush()

    def finish_bundle(self):
        for packed in self._flush():
            yield GlobalWindows.windowed_value(packed)

    def _flush(self) -> list:
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


def _unpack(item) -> list:
    batches = [files.read_range(*b) if isinstance(b, tuple) else b for b in item[1]]
    return unpack(batches)


def unpack_bucket(item) -> list:
    """One element of PackByBucket -> [(key, [values])] (reads the spilled ranges)."""
    return _unpack(item)


class PackByBucket(beam.PTransform):
    """(key, value) pairs -> (bucket, [packed batches or their byte ranges]): GroupByBucket
    without the last step, for a consumer that works a whole bucket per call (unpack_bucket):
    one element per bucket instead of one per key, which spares Beam's cost per element."""

    def __init__(self, spill_dir: str | None = None):
        super().__init__()
        self.spill_dir = spill_dir

    def expand(self, pairs):
        return (pairs
                | "Pack" >> beam.ParDo(_Pack(self.spill_dir))
                | "Shuffle" >> beam.GroupByKey())


class GroupByBucket(beam.PTransform):
    """(key, value) pairs -> (key, [values]), like GroupByKey; keys must be str or bytes and
    values plain data (tuples, lists, dicts, str, numbers) that FastPrimitivesCoder encodes.

    ``spill_dir``: where the batches are written on runners that hold shuffles in memory (a
    folder every worker can read, deleted with the job's staging)."""

    def __init__(self, spill_dir: str | None = None):
        super().__init__()
        self.spill_dir = spill_dir

    def expand(self, pairs):
        return (pairs
                | "Packed" >> PackByBucket(self.spill_dir)
                | "Unpack" >> beam.FlatMap(_unpack))
