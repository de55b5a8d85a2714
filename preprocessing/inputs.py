"""Which file a label row may read, and how much of it: every image stays inside --images.

A label file is input too: ``../x.jpg``, ``sub/../../x.jpg``, an absolute name, or a symlink in
the folder that points out of it would otherwise turn any readable file into a record, and
``/dev/zero`` or a FIFO named ``face.jpg`` would exhaust memory or hang the job. ``resolve``
decides from the name (and, for a local folder, the real path with symlinks followed) before
anything is opened; ``read`` opens regular files only and reads at most ``max_bytes + 1`` bytes.

A refusal says what rule the name broke and nothing about the file: no size, and the same
answer for a path outside the folder whether or not something exists there.
"""

from __future__ import annotations

import functools
import os
import stat

from contract import reasons

OUTSIDE = "the name resolves outside the --images folder; only files under it are read"
NOT_REGULAR = "not a regular file (a folder, pipe, device or socket); only files are read"


class Refused(ValueError):
    """An input this job does not read; ``reason`` is a contract.reasons code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def too_large(max_bytes: int) -> Refused:
    return Refused(reasons.FILE_TOO_LARGE, f"larger than --max_file_bytes={max_bytes}")


def load(root: str, name: str, source: str, max_bytes: int) -> bytes:
    """The bytes of image ``name`` under ``root``; Refused for every fault of this one file
    (outside, not regular, too large, missing, not readable): a retry would fail the same way,
    so it is a dead letter and the job goes on. Other errors (transient IO) are re-raised."""
    try:
        return read(resolve(root, name), max_bytes)
    except Refused:
        raise
    except PermissionError as e:
        raise Refused(reasons.UNREADABLE_IMAGE,
                      f"cannot read it: {type(e).__name__} ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - classified below, transient errors re-raised
        path = root.rstrip("/") + "/" + name
        if isinstance(e, FileNotFoundError) or not _exists(path):
            hint = " (the name starts or ends with a space)" if name != name.strip() else ""
            raise Refused(reasons.MISSING_FILE, f"named by {source} but not found{hint}") from None
        raise RuntimeError(f"reading {path}: {e}") from e


def resolve(root: str, name: str) -> str:
    """The path to open for ``name`` (relative to ``root``), or Refused(OUTSIDE_IMAGES_ROOT)."""
    segments = name.split("/")
    if not name or name.startswith("/") or (root.startswith("gs://") and ".." in segments):
        # GCS has no '..': an object name holding one is a literal key, refused as a trick.
        raise Refused(reasons.OUTSIDE_IMAGES_ROOT, OUTSIDE)
    path = root.rstrip("/") + "/" + name
    if root.startswith("gs://"):
        return path
    base = os.path.normpath(root)
    if not _under(os.path.normpath(path), base):
        raise Refused(reasons.OUTSIDE_IMAGES_ROOT, OUTSIDE)
    real = _real_path(_real_root(base), segments)  # symlinks followed, as the kernel will
    if not _under(real, _real_root(base)):
        raise Refused(reasons.OUTSIDE_IMAGES_ROOT, OUTSIDE)
    return real


def _real_path(real_root: str, segments: list[str]) -> str:
    """os.path.realpath(real_root/name), at one lstat per segment of the name instead of one
    per segment of the whole path (realpath is most of the check's cost otherwise)."""
    path = real_root
    for i, segment in enumerate(segments):
        if segment in ("", "."):
            continue
        if segment == "..":  # '..' after a symlink means its target's parent: let realpath say
            return os.path.realpath(os.path.join(real_root, *segments))
        path = os.path.join(path, segment)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return os.path.realpath(os.path.join(path, *segments[i + 1:]))
        except OSError:  # missing (or unreadable): no symlink below it to follow
            return os.path.join(path, *segments[i + 1:])
    return path


def read(path: str, max_bytes: int) -> bytes:
    """The bytes of a path from ``resolve``; Refused for non-regular or too large files.

    A missing local file raises FileNotFoundError; other OSErrors propagate (the caller tells a
    file's own fault from a transient one)."""
    if path.startswith("gs://"):
        from apache_beam.io.filesystems import FileSystems

        # GCS objects are always plain byte strings: only the size needs bounding.
        with FileSystems.open(path, compression_type="uncompressed") as f:
            data = f.read(max_bytes + 1)
    else:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the resolved path
        # was checked, so a symlink swapped in since is refused rather than followed.
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno == getattr(os, "ELOOP", None):
                raise Refused(reasons.NOT_A_REGULAR_FILE, NOT_REGULAR) from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise Refused(reasons.NOT_A_REGULAR_FILE, NOT_REGULAR)
            if info.st_size > max_bytes:
                raise too_large(max_bytes)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as f:
            # read(n) allocates n bytes up front: ask for the size fstat gave (+1 to see a file
            # grown since), and read on, still bounded, only if it did grow.
            data = f.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += f.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    return data


def _exists(path: str) -> bool:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=8)
def _real_root(root: str) -> str:
    return os.path.realpath(root)
