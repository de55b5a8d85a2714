"""The benchmarks' scratch folders: removed when a run ends, kept with --keep to inspect."""

from __future__ import annotations

import contextlib
import shutil
import tempfile


@contextlib.contextmanager
def scratch(prefix: str, keep: bool):
    """A new folder under /tmp for one benchmark run (the path), removed at the end unless kept."""
    work_dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        yield work_dir
    finally:
        if keep:
            print(f"outputs kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
