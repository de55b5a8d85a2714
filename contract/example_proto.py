"""tf.train.Example wire format in plain Python, so the Beam workers never import TensorFlow.

Importing TensorFlow would be most of the Beam job's fixed cost per worker, and on Dataflow a
worker dependency just to build one small proto. The message is tiny and frozen: Example
{features = 1} holds Features {map<string, Feature> feature = 1}; a Feature is one of
bytes_list = 1, float_list = 2, int64_list = 3 (numbers packed). Map entries are written in
sorted key order, as protobuf's deterministic serialisation does: tests/test_example_proto.py
checks the bytes against TensorFlow's own ``SerializeToString(deterministic=True)``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

BYTES, FLOAT, INT64 = 1, 2, 3  # Feature's oneof field numbers, also used as kind tags here


# Tags, key and value lengths are nearly all below 2**14: a table makes them a lookup (the
# loop below was a tenth of a record's whole preprocessing cost).
_SMALL = [bytes([v]) if v < 0x80 else bytes([(v & 0x7F) | 0x80, v >> 7]) for v in range(1 << 14)]


def _varint(value: int) -> bytes:
    if 0 <= value < 1 << 14:
        return _SMALL[value]
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: int, values: Sequence) -> bytes:
    if kind == BYTES:
        inner = b"".join(_field(1, v) for v in values)
    elif kind == FLOAT:
        inner = _field(1, struct.pack(f"<{len(values)}f", *values)) if values else b""
    elif kind == INT64:
        inner = _field(1, b"".join(_varint(int(v)) for v in values)) if values else b""
    else:
        raise ValueError(f"unknown feature kind {kind}")
    return _field(kind, inner)


def serialize_example(features: Mapping[str, tuple[int, Sequence]]) -> bytes:
    """{name: (BYTES|FLOAT|INT64, values)} -> serialised tf.train.Example, deterministic."""
    entries = []
    for name in sorted(features, key=lambda k: k.encode("utf-8")):
        kind, values = features[name]
        entry = _field(1, name.encode("utf-8")) + _field(2, _feature(kind, values))
        entries.append(_field(1, entry))
    return _field(1, b"".join(entries))
