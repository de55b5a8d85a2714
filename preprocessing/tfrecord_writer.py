"""The TFRecord container, written without TensorFlow: framing and whole-shard writes.

The Beam job must not import TensorFlow (Dataflow workers do not install it), so the framing
(length, masked CRC-32C of the length, data, masked CRC-32C of the data) is done here; shards
are written whole through contract.files, local or gs://.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from contract import files


def _masked_crc32c(data: bytes) -> int:
    import google_crc32c  # ships with google-cloud-storage, a dependency of this package

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frames(payloads: Iterable[bytes]) -> bytes:
    """The TFRecord container: per record, length + crc(length) + data + crc(data)."""
    parts = []
    for payload in payloads:
        length = struct.pack("<Q", len(payload))
        parts += [length, struct.pack("<I", _masked_crc32c(length)), payload,
                  struct.pack("<I", _masked_crc32c(payload))]
    return b"".join(parts)


def write_tfrecords(path: str, payloads: Iterable[bytes]) -> int:
    """Writes one shard (local or gs://); returns its size in bytes."""
    return write_frames(path, [tfrecord_frames(payloads)])


def write_frames(path: str, frames: Iterable[bytes]) -> int:
    """Writes already framed records (``tfrecord_frames``) as one file; returns its size."""
    return files.write_bytes(path, b"".join(frames))
