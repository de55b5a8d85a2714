"""Small gs:// helpers: parse and require gs:// URIs, upload, download, read, check existence.

Cloud machines (Vertex AI replicas, Dataflow workers, the serving container) cannot see the
submitting laptop's disk, so every path they read or write must be a gs:// URI; ``require_gs``
turns a local path there into an error that names the flag before anything is sent.

The client honours ``STORAGE_EMULATOR_HOST`` (the local gcp-storage-emulator the tests run):
google-cloud-storage already routes requests there, but would still look for real credentials,
so anonymous ones are used when the emulator is set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PREFIX = "gs://"
# Bucket names: 3-63 chars of lowercase letters, digits, '-', '_' and '.', starting and ending
# with a letter or digit (the Cloud Storage naming rules, minus the dotted-name length details).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


def is_gs(path: str | None) -> bool:
    return bool(path) and str(path).startswith(PREFIX)


def parse(uri: str, flag: str = "path") -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``; errors name ``flag``."""
    if not is_gs(uri):
        raise ValueError(f"--{flag}={uri!r} is not a gs:// URI")
    bucket, _, blob = uri[len(PREFIX):].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(f"--{flag}={uri!r}: {bucket!r} is not a valid bucket name")
    return bucket, blob


def require_gs(value: str | None, flag: str, what: str = "cloud machines") -> str:
    """Returns ``value`` if it is a well-formed gs:// URI, else raises naming ``--flag``."""
    if not value:
        raise ValueError(f"--{flag} is required (a gs:// URI)")
    if not is_gs(value):
        raise ValueError(f"--{flag}={value!r} must be a gs:// URI: {what} cannot read a local "
                         f"path (copy it first, e.g. `gcloud storage cp -r {value} gs://BUCKET/`)")
    parse(value, flag)
    return value


def join(uri: str, *parts: str) -> str:
    out = uri.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


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
