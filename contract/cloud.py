"""gs:// URIs and Google Cloud names, checked alike by every stage that sends work to the cloud.

Cloud machines (Vertex AI replicas, Dataflow workers, the serving container) cannot see the
submitting laptop's disk, so every path they read or write must be a gs:// URI; ``require_gs``
turns a local path there into an error that names the flag before anything is sent.
"""

from __future__ import annotations

import re

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


_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")


def check_project_region(project: str | None, region: str | None) -> None:
    if not project:
        raise ValueError("--project is required (the Google Cloud project ID)")
    if not _PROJECT.match(project):
        raise ValueError(f"--project={project!r} is not a project ID (6-30 lowercase letters, "
                         "digits and hyphens, starting with a letter)")
    if not region:
        raise ValueError("--region is required (e.g. us-central1)")
    if not _REGION.match(region):
        raise ValueError(f"--region={region!r} is not a region name like us-central1")
