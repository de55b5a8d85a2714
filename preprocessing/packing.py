"""GroupByBucket: a GroupByKey for many small (key, value) pairs that stays small in the runner.

The DirectRunner holds every shuffled element, decoded, in its own process until the next stage
runs. Here each worker packs its pairs into one bytes batch per bucket (a stable hash of the
key) and bundle, so the shuffle carries a few thousand byte strings instead of a Python object
per input; the grouping by key happens after it, per bucket. The output is GroupByKey's:
(key, [values]). (The runner still holds each stage's input while sending it: see README.)
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder
from apache_beam.transforms.window import GlobalWindows

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
        return packed


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


class GroupByBucket(beam.PTransform):
    """(key, value) pairs -> (key, [values]), like GroupByKey; keys must be str or bytes and
    values plain data (tuples, lists, dicts, str, numbers) that FastPrimitivesCoder encodes."""

    def expand(self, pairs):
        return (pairs
                | "Pack" >> beam.ParDo(_Pack())
                | "Shuffle" >> beam.GroupByKey()
                | "Unpack" >> beam.FlatMap(lambda item: unpack(item[1])))
