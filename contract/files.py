"""Whole-file IO for the stages' outputs, local paths and gs:// alike, without TensorFlow.

Beam's FileSystems (imported on first use: the trainer reads stats.json through here without
paying for Beam on local paths) because the Beam job must never import TensorFlow, and its GCS
client honours STORAGE_EMULATOR_HOST where tf.io.gfile's does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _uncompressed():
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def write_bytes(path: str, data: bytes, mime_type: str = "application/octet-stream") -> int:
    """Writes one file, local or gs://, as-is whatever its name ends with; returns its size."""
    with _fs().create(path, mime_type=mime_type,
                       compression_type=_uncompressed()) as f:
        f.write(data)
    return len(data)


def read_text(path: str) -> str:
    """A whole UTF-8 file; FileNotFoundError naming it when there is none."""
    if "://" not in path:
        with open(path, encoding="utf-8") as f:
            return f.read()
    if not _fs().exists(path):
        raise FileNotFoundError(path)
    with _fs().open(path, compression_type=_uncompressed()) as f:
        return f.read().decode("utf-8")


def write_json(path: str, value) -> None:
    write_bytes(path, json.dumps(value, indent=2, sort_keys=True).encode("utf-8"),
                "application/json")


def read_json(path: str):
    return json.loads(read_text(path))


def delete(paths: list[str]) -> None:
    existing = [p for p in paths if _fs().exists(p)]
    if existing:
        _fs().delete(existing)


def remove_tree(directory: str) -> None:
    """Deletes a folder and everything in it (no-op when absent), local or gs://."""
    if not directory.startswith("gs://"):
        if os.path.isdir(directory):
            _fs().delete([directory])
        return
    delete(matching([directory.rstrip("/") + "/**"]))


def matching(patterns: Iterable[str]) -> list[str]:
    results = _fs().match(list(patterns))
    return sorted(m.path for r in results for m in r.metadata_list)


def mkdirs(directory: str) -> None:
    if not directory.startswith("gs://"):  # GCS has no folders to create
        os.makedirs(directory, exist_ok=True)
