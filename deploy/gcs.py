"""Small gs:// helpers: parse and require gs:// URIs, upload, download, read, check existence.

URI checks (``require_gs``: cloud machines cannot read the laptop's disk) are contract.cloud's.

The client honours ``STORAGE_EMULATOR_HOST`` (the local gcp-storage-emulator the tests run):
google-cloud-storage already routes requests there, but would still look for real credentials,
so anonymous ones are used when the emulator is set.
"""

from __future__ import annotations

import os
from pathlib import Path

# The URI rules live in contract.cloud (preprocessing checks them too); deploy's modules use
# them as gcs.*.
from contract.cloud import PREFIX, is_gs, join, parse, require_gs  # noqa: F401


def client(project: str | None = None):
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project or "emulator", credentials=AnonymousCredentials())
    return storage.Client(project=project)


def upload_file(local_path: str | Path, uri: str, gcs=None) -> str:
    bucket, blob = parse(uri)
    if not blob:
        raise ValueError(f"{uri!r} names a bucket, not an object")
    (gcs or client()).bucket(bucket).blob(blob).upload_from_filename(str(local_path))
    return uri


def upload_dir(local_dir: str | Path, uri: str, gcs=None) -> list[str]:
    """Copies every file under ``local_dir`` to ``uri/<relative path>``; returns the URIs."""
    root = Path(local_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{local_dir} is not a directory")
    gcs = gcs or client()
    return [upload_file(path, join(uri, path.relative_to(root).as_posix()), gcs)
            for path in sorted(root.rglob("*")) if path.is_file()]


def download_file(uri: str, local_path: str | Path, gcs=None) -> Path:
    bucket, blob = parse(uri)
    local_path = Path(local_path)
    local_path.parent.mkdir(parents=True, exist_ok=True)
    (gcs or client()).bucket(bucket).blob(blob).download_to_filename(str(local_path))
    return local_path


def read_text(uri: str, gcs=None) -> str:
    """The object's text (UTF-8); FileNotFoundError naming the URI when there is none."""
    from google.api_core import exceptions

    bucket, blob = parse(uri)
    if not blob:
        raise ValueError(f"{uri!r} names a bucket, not an object")
    try:
        return (gcs or client()).bucket(bucket).blob(blob).download_as_text(encoding="utf-8")
    except exceptions.NotFound:
        raise FileNotFoundError(f"{uri} not found") from None


def exists(uri: str, gcs=None) -> bool:
    """True if ``uri`` is an object, or a "directory" (a prefix some object lives under)."""
    bucket, blob = parse(uri)
    gcs = gcs or client()
    if blob and gcs.bucket(bucket).blob(blob).exists():
        return True
    prefix = blob.rstrip("/") + "/" if blob else ""
    return any(True for _ in gcs.list_blobs(bucket, prefix=prefix, max_results=1))
