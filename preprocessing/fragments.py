"""How encoded records travel from the load stage to the shard writers: through files.

The load stage frames each record (``tfrecord_writer.tfrecord_frames``), keeps a bundle's frames
grouped by shard and writes them as one *fragment* file at the bundle's end (or every
``FLUSH_BYTES``), emitting one small ``Part`` per shard: where its bytes are, plus each record's
id, name, age, blur and frame length. Only Parts cross the shuffle; a shard writer reads its
byte ranges back, drops the copies dedup does not keep, sorts by id and writes the shard. Why:
on the DirectRunner every byte of a shuffle passes through the runner process, while files cost
a write and a read. Like Beam's file sinks, a retried bundle writes a new, uniquely named
fragment; all live under OUT/.staging and go with it.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from contract import files
from preprocessing import packing, tfrecord_writer

FRAGMENTS_DIR = "fragments"
# A bundle's frames are written out at this size even before the bundle ends: it bounds a
# worker's memory (the frames, plus one copy while writing), whatever the data set's size.
FLUSH_BYTES = 16 * 2**20


class Entry(NamedTuple):
    """What the writer needs of one record without reading it: sort key, verdict key, stats."""
    record_id: str
    file_name: str
    age: float
    blur: float
    length: int  # bytes of its TFRecord frame
    faces_found: int = 0  # faces the detector found in its photo (--face); 0 without a search


class Part(NamedTuple):
    """One shard's records inside one fragment file: bytes [offset, offset + size).

    The entries travel packed into one bytes value: the DirectRunner holds every shuffled Part
    decoded in its own process, and one bytes value is far smaller than a tuple per record."""
    path: str
    offset: int
    size: int
    packed: bytes

    @property
    def entries(self) -> list[Entry]:
        return [Entry(*fields) for fields in packing.decode(self.packed)]


def pack(entries) -> bytes:
    return packing.encode([tuple(e) for e in entries])


class Spill:
    """A bundle's frames, grouped by shard key until ``flush`` writes them as one fragment."""

    def __init__(self, directory: str):
        self.directory = directory
        self.groups: dict = {}
        self.num_bytes = 0

    def add(self, key, entry: Entry, frame: bytes) -> None:
        self.groups.setdefault(key, []).append((entry, frame))
        self.num_bytes += len(frame)

    def full(self) -> bool:
        return self.num_bytes >= FLUSH_BYTES

    def flush(self) -> list[tuple]:
        """Writes the held frames as one new fragment; returns a (shard key, Part) per shard."""
        if not self.groups:
            return []
        path = files.join(self.directory, f"{uuid.uuid4().hex}.frames")
        parts, chunks, offset = [], [], 0
        for key in sorted(self.groups):
            items = self.groups[key]
            size = sum(len(frame) for _, frame in items)
            parts.append((key, Part(path, offset, size, pack(e for e, _ in items))))
            chunks += [frame for _, frame in items]
            offset += size
        tfrecord_writer.write_frames(path, chunks)
        self.groups, self.num_bytes = {}, 0
        return parts


def read(part: Part) -> list[tuple[Entry, bytes]]:
    """A Part's records back as (entry, frame) pairs; fails naming the file if it is short."""
    with FileSystems.open(part.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(part.offset)
        data = f.read(part.size)
    if len(data) != part.size:
        raise OSError(f"fragment {part.path} holds {len(data)} bytes at {part.offset}, "
                      f"expected {part.size}: was OUT/.staging changed during the job?")
    records, start = [], 0
    for entry in part.entries:
        records.append((entry, data[start:start + entry.length]))
        start += entry.length
    return records
