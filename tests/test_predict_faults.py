"""Hostile inputs to trainer.predict, and user text that spreadsheets or matplotlib would run.

Each hostile file is refused with a one-line reason before anything large is decoded, and the
files around it are still predicted; a real CLI process's peak memory on all of them together
stays within 1.5x of the same process on one normal face.
"""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import peak_memory
import pytest
from fixed_models import mean_colour_model
from PIL import Image

from contract import limits
from contract.framing import Framing
from deploy.hostile_images import flat_png
from trainer import compare, export, predict, spreadsheet

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def png_of_zeros(path, width, height):
    """A grey PNG of zeros: 8000x8000 is 62 KB on disk, 64 MB decoded."""
    path.write_bytes(flat_png(width, height))
    return str(path)


def _face(path, grey=128, fmt=None):
    Image.new("RGB", (48, 40), (grey, grey, grey)).save(path, format=fmt)
    return str(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model")
    export.export_saved_model(mean_colour_model(SIZE), str(model_dir / "saved_model"),
                              Framing(SIZE), "regression", max_age=120)
    return model_dir


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """{path: the words its refusal must contain} for every kind of hostile file."""
    d = tmp_path_factory.mktemp("hostile")
    truncated = d / "truncated.png"
    _face(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-30])
    (d / "garbage.jpg").write_bytes(bytes(range(256)) * 4)
    (d / "empty.png").write_bytes(b"")
    huge = d / "huge.jpg"
    with open(huge, "wb") as f:  # sparse: no disk used
        f.truncate(limits.MAX_READ_BYTES + 1)
    os.mkfifo(d / "fifo.jpg")  # would hang an unbounded read
    return {
        png_of_zeros(d / "strip_1x20000.png", 1, 20000): "aspect ratio 20000.0 > max_aspect",
        png_of_zeros(d / "strip_1x100000.png", 1, 100000): "aspect ratio 100000.0",
        png_of_zeros(d / "bomb_8000x8000.png", 8000, 8000): "64000000 pixels > max_pixels",
        str(truncated): "could not be decoded (truncated or corrupt file)",
        str(d / "garbage.jpg"): "not an image format Pillow can read",
        str(d / "empty.png"): "0 bytes",
        str(huge): f"larger than the {limits.MAX_READ_BYTES}-byte read limit",
        str(d / "fifo.jpg"): "not a regular file",
        str(d / "missing.jpg"): "no such file",
    }


def test_hostile_files_are_refused_in_one_line_and_the_rest_predicted(hostile, tmp_path):
    good = [_face(tmp_path / "a.png", 0), _face(tmp_path / "b.tiff", 255, "TIFF"),
            _face(tmp_path / "c.webp", 128, "WEBP")]
    paths = [good[0], *hostile, *good[1:]]
    images, ok, errors = predict.read_images(paths, Framing(SIZE))
    assert ok == good and images.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), [0, 255, 128], atol=1.5)
    assert set(errors) == set(hostile)
    for path, words in hostile.items():
        assert words in errors[path] and "\n" not in errors[path], (path, errors[path])
        assert "Op:" not in errors[path] and "{{" not in errors[path]


def _peak_rss_mb(args, cwd) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return peak_memory.run(args, cwd=cwd, env=env, timeout=300)


@pytest.mark.slow
def test_cli_memory_on_hostile_files_stays_near_a_normal_face(model, hostile, tmp_path):
    face = "=HYPERLINK(x).png"  # relative to the CLI's working directory
    _face(tmp_path / face)
    cli = [sys.executable, "-m", "trainer.predict", f"--model={model}"]
    normal, normal_peak = _peak_rss_mb([*cli, face], tmp_path)
    assert normal.returncode == 0, normal.stderr[-2000:]
    hostile_paths = [p for p in hostile if "fifo" not in p]  # the in-process test covers it
    run, peak = _peak_rss_mb([*cli, *hostile_paths, face], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = list(csv.reader(io.StringIO(run.stdout)))
    assert rows[1][0] == "'" + face  # a formula-looking name stays text in a spreadsheet
    refused = [line for line in run.stderr.splitlines() if line.startswith("cannot read ")]
    assert len(refused) == len(hostile_paths)
    print(f"peak RSS: one normal face {normal_peak:.0f} MB, with every hostile file "
          f"{peak:.0f} MB")
    assert peak <= 1.5 * normal_peak, (peak, normal_peak)


@pytest.mark.parametrize("text, safe", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-2", "'-2"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("face.jpg", "face.jpg"),
    (-3.5, -3.5), ("a=b", "a=b")])
def test_spreadsheet_cells(text, safe):
    assert spreadsheet.safe_cell(text) == safe


def _run(root, name, val_mae):
    run = root / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"head": name, "epochs": 2}))
    pd.DataFrame({"epoch": [0, 1], "mae": [9.0, 8.0], "val_mae": val_mae}).to_csv(
        run / "history.csv", index=False)
    return str(run)


def test_compare_with_dollar_and_formula_run_names(tmp_path):
    runs = [_run(tmp_path, "lr$^$x", [9.0, 8.5]), _run(tmp_path, "=cmd|' -C calc'!A0",
                                                       [9.5, 9.0])]
    compare.compare(runs, str(tmp_path / "out"))  # matplotlib would parse "$^$" as mathtext
    saved = list(csv.DictReader((tmp_path / "out" / "compare.csv").open()))
    assert [r["run"] for r in saved] == ["lr$^$x", "'=cmd|' -C calc'!A0"]
    assert [r["head"] for r in saved] == ["lr$^$x", "'=cmd|' -C calc'!A0"]
    assert (tmp_path / "out" / "plots" / "learning_curves.png").stat().st_size > 1000
