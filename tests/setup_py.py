"""What setup.py declares, read by running it with setuptools.setup intercepted (no build)."""

import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup_kwargs() -> dict:
    """The keyword arguments setup.py passes to setup()."""
    import setuptools

    captured = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    return captured
