"""Hostile and unlucky inputs to preprocessing.run, one test per class, with real files and
real processes: reads outside --images, upscaling bombs, two runs into one output folder,
reserved column names, and the smaller parse and output-folder defects."""

import json
import os
import subprocess
import time

import peak_memory
import pytest
from PIL import Image
from preprocessing_cli import (
    ROOT,
    SIZE,
    cli,
    dead_letters,
    environ,
    labels_csv,
    png,
    record_ids_and_names,
    sha_id,
)

from contract import reasons, schema
from preprocessing import inputs, labels
from preprocessing import run as run_module

# --- 1. reads stay inside --images --------------------------------------------------------

def test_nothing_outside_the_images_folder_is_read_and_nothing_about_it_leaks(tmp_path):
    images, outside, out = tmp_path / "images", tmp_path / "outside", tmp_path / "out"
    good = png(str(images / "good.png"))
    inner = png(str(images / "sub" / "inner.png"), colour=(10, 90, 200))
    secret = png(str(outside / "secret.png"), colour=(0, 255, 0))
    os.symlink(outside / "secret.png", images / "link.png")  # points out: refused
    os.symlink(images / "sub" / "inner.png", images / "inlink.png")  # points in: read
    os.symlink("/dev/zero", images / "zero.png")
    os.mkfifo(images / "fifo.png")  # would block a plain open() for ever
    (images / "big.png").write_bytes(good + b"\0" * 5000)
    outside_names = ["../outside/secret.png", "sub/../../outside/secret.png",
                     str(outside / "secret.png"), "link.png", "zero.png",
                     "../../../../../../../../dev/zero", "../outside/not-there.png"]
    rows = [("good.png", 30), ("inlink.png", 40), ("fifo.png", 20), ("big.png", 20)]
    rows += [(name, 25) for name in outside_names]
    started = time.monotonic()
    proc = subprocess.run(cli(f"--labels={labels_csv(tmp_path / 'labels.csv', rows)}",
                               f"--images={images}", f"--output_dir={out}",
                               "--max_file_bytes=4000"),
                          capture_output=True, text=True, timeout=300, env=environ(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 240  # no hang on the FIFO, no read of /dev/zero

    errors = {e["file_name"]: e for e in dead_letters(str(out))}
    assert {n: e["reason"] for n, e in errors.items()} == {
        **dict.fromkeys(outside_names, reasons.OUTSIDE_IMAGES_ROOT),
        "fifo.png": reasons.NOT_A_REGULAR_FILE, "big.png": reasons.FILE_TOO_LARGE}
    # One sentence for every outside name, present or not: no size, no existence signal.
    assert {errors[n]["detail"] for n in outside_names} == {inputs.OUTSIDE}
    assert errors["big.png"]["detail"] == "larger than --max_file_bytes=4000"
    ids, names = record_ids_and_names(str(out))
    assert sorted(names) == ["good.png", "inlink.png"]
    assert sorted(ids) == sorted([sha_id(good), sha_id(inner)])
    assert sha_id(secret) not in ids


def test_gs_names_with_dot_dot_or_a_leading_slash_are_refused(tmp_path, gcs_bucket,
                                                             beam_gcs_no_credential_wait):
    from google.cloud import storage

    bucket = storage.Client().bucket(gcs_bucket)
    good = png(str(tmp_path / "good.png"))
    bucket.blob("in/images/good.png").upload_from_string(good)
    bucket.blob("in/secret.png").upload_from_string(png(str(tmp_path / "s.png"), colour=(0, 9, 0)))
    names = ["../secret.png", "sub/../../secret.png", "sub/../good.png", "/secret.png"]
    labels_path = labels_csv(tmp_path / "labels.csv",
                             [("good.png", 30)] + [(n, 20) for n in names])
    bucket.blob("in/labels.csv").upload_from_filename(labels_path)
    out = f"gs://{gcs_bucket}/out"
    stats = run_module.run([f"--labels=gs://{gcs_bucket}/in/labels.csv",
                            f"--images=gs://{gcs_bucket}/in/images", f"--output_dir={out}",
                            f"--image_size={SIZE}"])
    assert stats["rejects"] == {reasons.OUTSIDE_IMAGES_ROOT: len(names)}
    lines = bucket.blob("out/errors/errors.jsonl").download_as_text().splitlines()
    assert sorted(json.loads(x)["file_name"] for x in lines) == sorted(names)


def test_resolve_follows_symlinks_as_the_kernel_does(tmp_path):
    real_root, outside = tmp_path / "data", tmp_path / "outside"
    (real_root / "sub").mkdir(parents=True)
    outside.mkdir()
    for folder in (real_root, real_root / "sub", outside):
        (folder / "f.png").write_bytes(b"x")
    os.symlink(real_root, tmp_path / "root")  # --images may itself be a symlink
    os.symlink(real_root / "sub", real_root / "in_dir")
    os.symlink(outside, real_root / "out_dir")
    root = str(tmp_path / "root")
    inside = {"f.png", "sub/f.png", "in_dir/f.png", "in_dir/../f.png", "sub/./f.png",
              "./f.png", "nope/f.png"}
    for name in inside:
        assert inputs.resolve(root, name) == os.path.realpath(os.path.join(root, name)), name
    # out_dir/../f.png is data/f.png to normpath but outside/../f.png to the kernel.
    for name in ("out_dir/f.png", "out_dir/../f.png", "../data/f.png", "in_dir/../../f.png"):
        with pytest.raises(inputs.Refused) as refused:
            inputs.resolve(root, name)
        assert refused.value.reason == reasons.OUTSIDE_IMAGES_ROOT, name


# --- 2. bounded decode and resize --------------------------------------------------------

@pytest.mark.slow
def test_upscaling_bombs_are_rejected_before_decoding(tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    png(str(images / "face.png"))
    sizes = {"strip.png": (1, 20_000), "long.png": (100_000, 1)}  # 4 GB and a crash before
    for name, size in sizes.items():
        Image.new("L", size, 128).save(images / name, format="PNG", optimize=True)
        assert os.path.getsize(images / name) < 1000
    rows = [("face.png", 30), ("strip.png", 20), ("long.png", 20)]
    started = time.monotonic()
    proc, peak_mb = peak_memory.run(
        cli(f"--labels={labels_csv(tmp_path / 'labels.csv', rows)}", f"--images={images}",
             f"--output_dir={out}"), timeout=300, env=environ(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 120
    assert peak_mb < 1_000  # a normal job's few hundred MB; the strip alone took 4 GB before
    errors = {e["file_name"]: e for e in dead_letters(str(out))}
    assert {n: e["reason"] for n, e in errors.items()} == dict.fromkeys(
        sizes, reasons.EXTREME_ASPECT_RATIO)
    assert "aspect ratio 20000.0 > max_aspect_ratio 10" in errors["strip.png"]["detail"]
    with open(out / "stats.json") as f:
        stats = json.load(f)
    assert (stats["max_pixels"], stats["max_aspect_ratio"]) == (40_000_000, 10.0)


def test_max_aspect_ratio_is_a_flag_recorded_with_the_framing(tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    png(str(images / "square.png"))
    png(str(images / "wide.png"), size=(64, 32))
    stats = run_module.run([
        f"--labels={labels_csv(tmp_path / 'l.csv', [('square.png', 30), ('wide.png', 31)])}",
        f"--images={images}", f"--output_dir={out}", f"--image_size={SIZE}",
        "--max_aspect_ratio=1.5", "--max_pixels=5000"])
    assert stats["rejects"] == {reasons.EXTREME_ASPECT_RATIO: 1}
    assert (stats["max_pixels"], stats["max_aspect_ratio"]) == (5000, 1.5)
    assert (stats["image_size"], stats["resize"], stats["margin"]) == (SIZE, "crop", 0.0)


# --- 4. reserved column names ------------------------------------------------------------

@pytest.mark.parametrize("column", ["id", "blur", "brightness", "filename", "true_age"])
def test_reserved_column_names_are_refused_before_any_image_is_read(tmp_path, column):
    out = tmp_path / "out"
    csv_path = labels_csv(tmp_path / "l.csv", [("never-read.png", 30, "p1")],
                       header=f"file_name,real_age,{column}")
    (tmp_path / "images").mkdir()
    proc = subprocess.run(cli(f"--labels={csv_path}", f"--images={tmp_path / 'images'}",
                               f"--output_dir={out}", f"--group_by={column}"),
                          capture_output=True, text=True, timeout=120, env=environ(), cwd=ROOT)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"preprocessing.run: error: --labels: column(s) ['{column}']")
    assert str(list(schema.RESERVED_COLUMNS)) in line and f"person_{column}" in line
    assert "--group_by" in line
    assert not out.exists()  # refused before the job took its output folder


def test_reserved_names_cover_what_the_trainer_and_evaluation_use():
    from trainer import data, metrics

    assert set(data.META_KEYS) | {metrics.TRUE, metrics.PRED, "file"} <= set(
        schema.RESERVED_COLUMNS)


# --- 5. smaller defects ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "inside_a_file", "unwritable"])
def test_an_unusable_output_dir_fails_up_front_in_one_line(tmp_path, kind):
    images = tmp_path / "images"
    png(str(images / "a.png"))
    (tmp_path / "a_file").write_text("x")
    out = {"file": tmp_path / "a_file", "inside_a_file": tmp_path / "a_file" / "out",
           # root writes through any mode bits: sysfs refuses everyone
           "unwritable": "/sys/kernel" if os.geteuid() == 0 else tmp_path / "ro"}[kind]
    if kind == "unwritable" and os.geteuid() != 0:
        out.mkdir(mode=0o555)
    proc = subprocess.run(cli(f"--labels={labels_csv(tmp_path / 'l.csv', [('a.png', 3)])}",
                               f"--images={images}", f"--output_dir={out}"),
                          capture_output=True, text=True, timeout=120, env=environ(), cwd=ROOT)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"preprocessing.run: error: --output_dir={out}: ")
    assert {"file": "is a file, not a folder", "inside_a_file": "is inside the file",
            "unwritable": "cannot write in it"}[kind] in last


def test_cr_only_csv_unstripped_names_and_strict_ages(tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    png(str(images / " spaced .png"))
    png(str(images / "plain.png"), colour=(1, 2, 3))
    png(str(images / "ten.png"), colour=(4, 5, 6))
    rows = [(" spaced .png", " 30 "), ("plain.png", "41"), (" plain.png", "42"),
            ("ten.png", "1_0")] + [(f"x{i}.png", age) for i, age in enumerate(
                ["nan", "inf", "1e1", "\uff13\uff14", "0x1f", "--3"])]
    text = "file_name,real_age\r" + "".join(f"{n},{a}\r" for n, a in rows)  # old Mac endings
    (tmp_path / "l.csv").write_bytes(text.encode("utf-8"))
    stats = run_module.run([f"--labels={tmp_path / 'l.csv'}", f"--images={images}",
                            f"--output_dir={out}", f"--image_size={SIZE}"])
    errors = {e["file_name"]: e for e in dead_letters(str(out))}
    assert errors[" plain.png"]["reason"] == reasons.MISSING_FILE
    assert "starts or ends with a space" in errors[" plain.png"]["detail"]
    assert {n: errors[n]["reason"] for n in ["ten.png"] + [f"x{i}.png" for i in range(6)]} == \
        dict.fromkeys(["ten.png"] + [f"x{i}.png" for i in range(6)], reasons.BAD_AGE)
    assert sorted(record_ids_and_names(str(out))[1]) == [" spaced .png", "plain.png"]
    assert stats["inputs"] == len(rows)


@pytest.mark.parametrize("text,age", [("34", 34.0), ("+7", 7.0), ("0.5", 0.5), (".5", 0.5),
                                      ("34.", 34.0), ("034", 34.0)])
def test_plain_decimal_ages_are_read(text, age):
    assert labels.parse_age(text, 120) == age
