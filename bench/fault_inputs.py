"""Hostile and damaged inputs for bench.faults, each made from a few bytes on the spot.

Nothing here is research data: the faces are the project's synthetic drawings, the bombs are
PNG headers with almost no pixel data behind them.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

from PIL import Image

from deploy.hostile_images import flat_png

# A size no synthetic face file has: if it shows up in a dead letter, the file's size leaked.
CANARY_BYTES = 31_337


# The same strip and square bombs as the serving check, plus the strip laid flat.
BOMBS = {name: (lambda w=w, h=h: flat_png(w, h)) for name, (w, h) in {
    "png_1x20000": (1, 20_000), "png_100000x1": (100_000, 1),
    "png_8000x8000": (8_000, 8_000)}.items()}


def canary(face: bytes) -> bytes:
    """A valid face JPEG padded after its end marker (decoders ignore it) to CANARY_BYTES."""
    if len(face) >= CANARY_BYTES:
        raise ValueError(f"face of {len(face)} bytes is larger than the canary size")
    return face + b"\x00" * (CANARY_BYTES - len(face))


def tiff(face: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(face)).save(out, format="TIFF")
    return out.getvalue()


def outside_rows(images: Path, outside: Path) -> list[str]:
    """Label file names that point outside ``images`` or at things that are not files.

    ``outside`` must hold canary.jpg. Makes the symlinks and the FIFO inside ``images``.
    """
    canary_path = outside / "canary.jpg"
    (images / "sub").mkdir(exist_ok=True)
    os.symlink(canary_path, images / "link_out.jpg")
    os.symlink("/dev/zero", images / "link_zero.jpg")
    os.mkfifo(images / "fifo.jpg")
    up = os.path.relpath(outside, images)
    depth = len(images.resolve().parts)
    return [f"{up}/canary.jpg", f"sub/../{up}/canary.jpg", "link_out.jpg", str(canary_path),
            "../" * depth + "dev/zero", "link_zero.jpg", "fifo.jpg"]


def tfrecord_offsets(data: bytes) -> list[int]:
    """Start offset of every record in a TFRecord file (8-byte length, 4 CRC, data, 4 CRC)."""
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        (length,) = struct.unpack("<Q", data[at:at + 8])
        at += 16 + length
    return offsets


def drop_last_record(path: Path) -> None:
    """Truncates a shard at a record boundary: a reader that does not count cannot tell."""
    data = path.read_bytes()
    path.write_bytes(data[:tfrecord_offsets(data)[-1]])


def flip_byte_mid_record(path: Path) -> None:
    data = bytearray(path.read_bytes())
    offsets = tfrecord_offsets(bytes(data))
    middle = offsets[len(offsets) // 2] + 40  # inside the payload, past the framing
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
