"""One job per output folder: OUT/.lock is taken before any work and held until the job ends.

Two runs into one OUT would publish each other's shards (or none), so a run claims OUT, stages
into OUT/.staging/RUN_ID, and a second run fails at once naming the lock's holder (host, pid,
start). Local: created with O_EXCL and held with ``flock``, which the kernel drops however the
holder ends; a lock whose flock can be taken is taken over. gs://: created only if absent
(``ifGenerationMatch=0``); GCS cannot tell whether the holder runs, so only a lock of a process of
this machine that is gone is broken automatically (``_acquire_gcs``), any other by hand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

LOCK_FILE = ".lock"
_log = logging.getLogger(__name__)


class OutputLockedError(RuntimeError):
    """Another run holds the output folder."""


class OutputDirError(RuntimeError):
    """The output folder cannot be created or written."""


@dataclass
class Lock:
    path: str
    run_id: str
    handle: object  # the local file descriptor, or the GCS blob and its generation


def new_run_id() -> str:
    """Sortable and unique: the UTC start time plus 8 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


@contextlib.contextmanager
def held(output_dir: str, project: str | None = None):
    """Holds OUT/.lock for the ``with`` block; yields the Lock (its run_id names the staging)."""
    lock = acquire(output_dir, new_run_id(), project)
    try:
        yield lock
    finally:
        release(lock)


def acquire(output_dir: str, run_id: str, project: str | None = None) -> Lock:
    path = output_dir.rstrip("/") + "/" + LOCK_FILE
    info = json.dumps({"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                       "pid_start": _start_time(os.getpid()),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    if path.startswith("gs://"):
        return _acquire_gcs(path, run_id, info, project)
    return _acquire_local(output_dir, path, run_id, info)


def release(lock: Lock) -> None:
    if lock.path.startswith("gs://"):
        from google.api_core import exceptions

        blob, generation = lock.handle
        try:
            blob.delete(if_generation_match=generation)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            _log.warning("%s was removed or replaced while this run held it", lock.path)
        return
    # Unlinked while the flock is held: a run waiting on this inode then sees it is gone.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock.path)
    os.close(lock.handle)


def _acquire_local(output_dir: str, path: str, run_id: str, info: str) -> Lock:
    import fcntl

    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"--output_dir={output_dir}: cannot create it "
                             f"({e.strerror})") from None
    for _ in range(20):
        created = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            created = False
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:  # released in between: try to create it again
                continue
            except OSError as e:
                raise OutputDirError(f"--output_dir={output_dir}: cannot write in it "
                                     f"({e.strerror})") from None
        except OSError as e:
            raise OutputDirError(f"--output_dir={output_dir}: cannot write in it "
                                 f"({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_fd(fd)
            os.close(fd)
            raise OutputLockedError(
                _locked(path, holder, "it is held by a running process")) from None
        if not _same_file(fd, path):  # its holder released it between our open and flock
            os.close(fd)
            continue
        previous = "" if created else _read_fd(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode("utf-8"), 0)
        if previous:
            _log.warning("took over %s, left by a run that is no longer going: %s", path,
                         previous)
        return Lock(path, run_id, fd)
    raise OutputLockedError(_locked(path, "", "it changed hands 20 times while this run waited"))


def _acquire_gcs(path: str, run_id: str, info: str, project: str | None) -> Lock:
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    bucket, _, name = path[len("gs://"):].partition("/")
    try:
        blob = storage.Client(project=project).bucket(bucket).blob(name)
    except DefaultCredentialsError as e:
        raise OutputDirError(f"--output_dir={path.rsplit('/', 1)[0]}: no Google credentials to "
                             f"write it ({e})") from None
    for _ in range(5):
        current = _read_blob(blob)
        if current is not None:
            holder, generation = current
            if not _gone(holder):
                raise OutputLockedError(_locked(path, holder, "GCS cannot tell whether its "
                                                "holder still runs"))
            # Only that generation: two runs cannot both break it and then both take it.
            with contextlib.suppress(exceptions.NotFound, exceptions.PreconditionFailed):
                blob.delete(if_generation_match=generation)
            _log.warning("took over %s, left by a run that is no longer going: %s", path, holder)
            continue
        try:
            blob.upload_from_string(info, content_type="application/json", if_generation_match=0)
        except exceptions.PreconditionFailed:  # another run created it first
            continue
        except exceptions.GoogleAPICallError as e:
            raise OutputDirError(f"--output_dir={path.rsplit('/', 1)[0]}: cannot write in it "
                                 f"({e.message})") from None
        # Read back: a store that ignored the precondition (an emulator) still shows a race.
        mine = _read_blob(blob)
        if mine is None or mine[0] != info:
            raise OutputLockedError(_locked(path, mine[0] if mine else "", "another run "
                                            "took it at the same moment"))
        return Lock(path, run_id, (blob, mine[1]))
    raise OutputLockedError(_locked(path, "", "it changed hands 5 times while this run waited"))


def _locked(path: str, holder: str, why: str) -> str:
    remove = f"gcloud storage rm {path}" if path.startswith("gs://") else f"rm {path}"
    return (f"another preprocessing run is writing to this --output_dir: {path} exists and "
            f"{why} (holder: {holder.strip() or 'not yet written'}). Wait for it to finish; if "
            f"no such run is going any more, remove the lock ({remove}) and run again")


def _gone(holder_text: str) -> bool:
    """True only for a lock of a process of this machine that no longer runs."""
    try:
        holder = json.loads(holder_text)
        pid, host = int(holder["pid"]), holder["host"]
    except (ValueError, KeyError, TypeError):
        return False
    return host == socket.gethostname() and not _alive(pid, holder.get("pid_start"))


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    fields = _proc_stat(pid)
    if fields is None:  # no /proc here: the signal check is all there is
        return True
    # A zombie has ended; a different start time means the pid now names another process.
    return fields[0] != "Z" and (start is None or int(fields[19]) == start)


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), else None."""
    fields = _proc_stat(pid)
    return None if fields is None else int(fields[19])


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields from the state on (field 3 is index 0), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return None


def _read_fd(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("utf-8", "replace")


def _same_file(fd: int, path: str) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _read_blob(blob):
    """(text, generation) of the lock object, or None when absent."""
    from google.api_core import exceptions

    try:
        blob.reload()
        data = blob.download_as_bytes(if_generation_match=blob.generation)
    except (exceptions.NotFound, exceptions.PreconditionFailed):
        return None  # absent, or replaced between the two calls: the caller looks again
    return data.decode("utf-8", "replace"), blob.generation
