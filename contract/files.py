"""Whole-file IO for every stage, local paths and gs:// alike, without TensorFlow.

Local paths use plain Python, so report, plots and the trainer's small files import neither
TensorFlow nor Beam. gs:// goes through Beam's FileSystems (imported on first use): the Beam
job must never import TensorFlow, and its GCS client honours STORAGE_EMULATOR_HOST where
tf.io.gfile's does not. Files are written whole, never appended to (GCS objects cannot be).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable

_MISSING = object()


def join(directory: str, *names: str) -> str:
    """``directory/name/...`` for local paths and gs:// alike. Names are kept as written (no
    normalising, unlike os.path.join or contract.cloud.join): inputs checks them afterwards."""
    return "/".join([directory.rstrip("/"), *names])


def _is_local(path: str) -> bool:
    return "://" not in path


def _fs():
    from apache_beam.io.filesystems import FileSystems

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        _skip_credential_search()
    return FileSystems


def _skip_credential_search() -> None:
    # The emulator takes no credentials, and Beam would spend ~20-30 s retrying a search for
    # them (metadata server, back-off) before using the anonymous client the emulator needs.
    # Beam internal (setup.py pins the Beam minor for it): its cached "none found".
    from apache_beam.internal.gcp import auth

    with auth._Credentials._credentials_lock:
        if not auth._Credentials._credentials_init:
            auth._Credentials._credentials, auth._Credentials._credentials_init = None, True


def _uncompressed():
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def _open(path: str):
    if _is_local(path):
        return open(path, "rb")
    return _fs().open(path, compression_type=_uncompressed())


def _create(path: str, mime_type: str = "application/octet-stream"):
    if _is_local(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return open(path, "wb")
    return _fs().create(path, mime_type=mime_type, compression_type=_uncompressed())


def write_bytes(path: str, data: bytes, mime_type: str = "application/octet-stream") -> int:
    """Writes one file as-is, creating local parent folders; returns its size."""
    with _create(path, mime_type) as f:
        f.write(data)
    return len(data)


def write_text(path: str, text: str) -> None:
    """Writes a whole UTF-8 file atomically, so that a reader (a restarted job reading its
    history back, ``trainer.compare`` on a run still training) never sees half a file."""
    data = text.encode("utf-8")
    if not _is_local(path):  # a GCS object appears only once its upload is complete
        write_bytes(path, data, "text/plain")
        return
    tmp = path + ".tmp"
    write_bytes(tmp, data)
    os.replace(tmp, path)


def write_json(path: str, value) -> None:
    write_bytes(path, json.dumps(value, indent=2, sort_keys=True).encode("utf-8"),
                "application/json")


def read_bytes(path: str) -> bytes:
    """A whole file; FileNotFoundError naming it when there is none."""
    if not _is_local(path) and not _fs().exists(path):
        raise FileNotFoundError(path)
    with _open(path) as f:
        return f.read()


def read_range(path: str, offset: int, size: int) -> bytes:
    """Bytes [offset, offset + size) of a file written earlier in the same job; OSError naming
    the file when it is shorter (staging changed under the job)."""
    with _open(path) as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{path} holds {len(data)} bytes at {offset}, expected {size}: was "
                      "OUT/.staging changed during the job?")
    return data


def read_text(path: str) -> str:
    """A whole UTF-8 file; FileNotFoundError naming it when there is none."""
    if _is_local(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    return read_bytes(path).decode("utf-8")


def read_json(path: str, default=_MISSING):
    """The parsed JSON file; ``default`` when given and there is no such file."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        if default is _MISSING:
            raise
        return default
    return json.loads(text)


def exists(path: str) -> bool:
    """True for a file or a folder; on gs:// a folder is a prefix some object lives under."""
    if _is_local(path):
        return os.path.exists(path)
    return _fs().exists(path) or bool(_fs().match([path.rstrip("/") + "/**"],
                                                  limits=[1])[0].metadata_list)


def copy(source: str, destination: str) -> str:
    """Copies one file between any two of local and gs:// (within GCS, server-side)."""
    if not _is_local(source) and not _is_local(destination):
        _fs().copy([source], [destination])
    else:
        with _open(source) as src, _create(destination) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return destination


def copy_tree(local_dir: str, destination: str) -> list[str]:
    """Copies every file under a local folder to ``destination/<relative path>``."""
    if not os.path.isdir(local_dir):
        raise FileNotFoundError(f"{local_dir} is not a directory")
    out = []
    for root, dirs, names in os.walk(local_dir):
        dirs.sort()
        for name in sorted(names):
            relative = os.path.relpath(os.path.join(root, name), local_dir)
            out.append(copy(os.path.join(root, name),
                            "/".join([destination.rstrip("/"), *relative.split(os.sep)])))
    return sorted(out)


def delete(paths: list[str]) -> None:
    existing = [p for p in paths if _fs().exists(p)]
    if existing:
        _fs().delete(existing)


def move(sources: list[str], destinations: list[str]) -> None:
    """Renames files (on GCS: copy, then delete)."""
    _fs().rename(sources, destinations)


def remove_tree(directory: str) -> None:
    """Deletes a folder and everything in it (no-op when absent), local or gs://."""
    if _is_local(directory):
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        return
    delete(matching([directory.rstrip("/") + "/**"]))


def matching(patterns: Iterable[str]) -> list[str]:
    return sorted(sizes(patterns))


def sizes(patterns: Iterable[str]) -> dict[str, int]:
    """Path -> size in bytes of every file matching the glob patterns."""
    results = _fs().match(list(patterns))
    return {m.path: m.size_in_bytes for r in results for m in r.metadata_list}


def mkdirs(directory: str) -> None:
    if _is_local(directory):  # GCS has no folders to create
        os.makedirs(directory, exist_ok=True)
