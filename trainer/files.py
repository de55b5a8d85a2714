"""Whole-file reads and writes of the trainer's outputs, for local paths and gs:// alike.

Outputs are written whole, never appended to, because gs:// objects cannot be appended to.
``write_text`` goes through PATH.tmp and a rename so that a reader (a restarted job reading its
history back, ``trainer.compare`` reading a run that is still training) never sees half a file.
"""

from __future__ import annotations

import json
from pathlib import Path


def _gfile():
    # Imported here, not at the top: report, metrics and plots use this module and stay free
    # of TensorFlow, and a local write_bytes never needs it.
    import tensorflow as tf

    return tf.io.gfile


def exists(path: str) -> bool:
    return _gfile().exists(path)


def read_json(path: str, default=None):
    """The parsed JSON file at `path`, or `default` when there is no such file."""
    gfile = _gfile()
    if not gfile.exists(path):
        return default
    with gfile.GFile(path) as f:
        return json.load(f)


def write_text(path: str, text: str) -> None:
    """Writes a whole text file atomically: PATH.tmp first, then renamed over PATH."""
    gfile = _gfile()
    tmp = path + ".tmp"
    with gfile.GFile(tmp, "w") as f:
        f.write(text)
    gfile.rename(tmp, path, overwrite=True)  # readers never see a half-written file


def write_bytes(path: str, data: bytes) -> None:
    """Writes a whole file, creating its parent folders; URLs such as gs:// via tf.io.gfile."""
    if "://" in path:
        gfile = _gfile()
        gfile.makedirs(path.rsplit("/", 1)[0])
        with gfile.GFile(path, "wb") as f:
            f.write(data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
