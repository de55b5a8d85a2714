"""How encoded records travel from the load stage to the shard writers: through files.

The load stage frames each record (``tfrecord_writer.tfrecord_frames``), keeps a bundle's frames
grouped by shard and writes them as one *fragment* file at the bundle's end (or every
``FLUSH_BYTES``), each shard's frames followed by its records' ids, names, ages, blurs and frame
lengths, and emits one small ``Part`` per shard: where those bytes are. Only Parts cross the
shuffle; a shard writer reads its byte ranges back, drops the copies dedup does not keep, sorts
by id and writes the shard. Why: on the DirectRunner every byte of a shuffle passes through the
runner process, while files cost a write and a read. Like Beam's file sinks, a retried bundle
writes a new, uniquely named fragment; all live under OUT/.staging and go with it.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from contract import files
from preprocessing import packing

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
    """One shard's records inside one fragment file: their frames at bytes [offset, offset +
    size), then their Entries, packed, in the next ``entries_size`` bytes.

    The entries stay in the file: the DirectRunner holds every shuffled Part in its own process
    (several copies on the way to a worker), so anything per record in a Part would make the
    runner grow with the data set."""
    path: str
    offset: int
    size: int
    entries_size: int


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
            entries = packing.encode([tuple(e) for e, _ in items])
            parts.append((key, Part(path, offset, size, len(entries))))
            chunks += [frame for _, frame in items] + [entries]
            offset += size + len(entries)
        files.write_bytes(path, b"".join(chunks))
        self.groups, self.num_bytes = {}, 0
        return parts


def read(part: Part) -> list[tuple[Entry, bytes]]:
    """A Part's records back as (entry, frame) pairs; fails naming the file if it is short."""
    data = files.read_range(part.path, part.offset, part.size + part.entries_size)
    records, start = [], 0
    for fields in packing.decode(data[part.size:]):
        entry = Entry(*fields)
        records.append((entry, data[start:start + entry.length]))
        start += entry.length
    return records
