"""Tiny PNGs that break the image limits: a few hundred bytes to 62 KB each, gigabytes if decoded.

Standard library only, so the serving check (on a bare TensorFlow), the benchmarks and the tests
all build the same bytes.
"""

from __future__ import annotations

import struct
import zlib

# Each breaks a limit while weighing a few hundred bytes to 62 KB: a strip whose resize would
# grow N times the square, and more pixels than a server should decode.
HOSTILE = {"strip_1x20000": (1, 20_000), "strip_1x100000": (1, 100_000),
           "square_8000x8000": (8000, 8000)}


def flat_png(width: int, height: int, grey: bool = True) -> bytes:
    """A valid one-colour PNG of any declared size: zlib shrinks its zero rows ~1000x."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + width * (1 if grey else 3))
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if grey else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))
