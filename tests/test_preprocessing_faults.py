"""Hostile and unlucky inputs to preprocessing.run, one test per class, with real files and
real processes: reads outside --images, upscaling bombs, two runs into one output folder,
reserved column names, and the smaller parse and output-folder defects."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import peak_memory
import pytest
from PIL import Image

from contract import reasons, schema
from preprocessing import inputs, labels, lock
from preprocessing import run as run_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16


def _png(path, size=(32, 32), colour=(200, 120, 40)) -> bytes:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")
    with open(path, "rb") as f:
        return f.read()


def _labels(path, rows, header="file_name,real_age"):
    with open(path, "w", newline="") as f:
        f.write(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def _cli(*args):
    """argv of a real ``python -m preprocessing.run`` process."""
    return [sys.executable, "-m", "preprocessing.run", f"--image_size={SIZE}", *args]


def _environ(**extra):
    return dict(os.environ, PYTHONPATH=ROOT, **extra)


def _errors(out):
    with open(os.path.join(out, schema.ERRORS_DIR, "errors.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _record_ids_and_names(out):
    import tensorflow as tf

    ids, names = [], []
    for n in sorted(os.listdir(out)):
        if "-of-" in n:
            for r in tf.data.TFRecordDataset(os.path.join(out, n)):
                example = tf.train.Example.FromString(r.numpy())
                ids.append(example.features.feature[schema.ID].bytes_list.value[0].decode())
                names.append(example.features.feature[schema.FILENAME].bytes_list.value[0]
                             .decode())
    return ids, names


def _sha_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


# --- 1. reads stay inside --images --------------------------------------------------------

def test_nothing_outside_the_images_folder_is_read_and_nothing_about_it_leaks(tmp_path):
    images, outside, out = tmp_path / "images", tmp_path / "outside", tmp_path / "out"
    good = _png(str(images / "good.png"))
    inner = _png(str(images / "sub" / "inner.png"), colour=(10, 90, 200))
    secret = _png(str(outside / "secret.png"), colour=(0, 255, 0))
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
    proc = subprocess.run(_cli(f"--labels={_labels(tmp_path / 'labels.csv', rows)}",
                               f"--images={images}", f"--output_dir={out}",
                               "--max_file_bytes=4000"),
                          capture_output=True, text=True, timeout=300, env=_environ(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 240  # no hang on the FIFO, no read of /dev/zero

    errors = {e["file_name"]: e for e in _errors(str(out))}
    assert {n: e["reason"] for n, e in errors.items()} == {
        **dict.fromkeys(outside_names, reasons.OUTSIDE_IMAGES_ROOT),
        "fifo.png": reasons.NOT_A_REGULAR_FILE, "big.png": reasons.FILE_TOO_LARGE}
    # One sentence for every outside name, present or not: no size, no existence signal.
    assert {errors[n]["detail"] for n in outside_names} == {inputs.OUTSIDE}
    assert errors["big.png"]["detail"] == "larger than --max_file_bytes=4000"
    ids, names = _record_ids_and_names(str(out))
    assert sorted(names) == ["good.png", "inlink.png"]
    assert sorted(ids) == sorted([_sha_id(good), _sha_id(inner)])
    assert _sha_id(secret) not in ids


def test_gs_names_with_dot_dot_or_a_leading_slash_are_refused(tmp_path, gcs_bucket,
                                                             beam_gcs_no_credential_wait):
    from google.cloud import storage

    bucket = storage.Client().bucket(gcs_bucket)
    good = _png(str(tmp_path / "good.png"))
    bucket.blob("in/images/good.png").upload_from_string(good)
    bucket.blob("in/secret.png").upload_from_string(_png(str(tmp_path / "s.png"), colour=(0, 9, 0)))
    names = ["../secret.png", "sub/../../secret.png", "sub/../good.png", "/secret.png"]
    labels_csv = _labels(tmp_path / "labels.csv", [("good.png", 30)] + [(n, 20) for n in names])
    bucket.blob("in/labels.csv").upload_from_filename(labels_csv)
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


@pytest.fixture
def beam_gcs_no_credential_wait(monkeypatch):
    """Skips only Beam's ~30 s search for Google credentials (none exist here); every read and
    write still goes through Beam's GCS IO to the emulator (see test_preprocessing_e2e)."""
    from apache_beam.internal.gcp import auth

    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)


# --- 2. bounded decode and resize --------------------------------------------------------

@pytest.mark.slow
def test_upscaling_bombs_are_rejected_before_decoding(tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    _png(str(images / "face.png"))
    sizes = {"strip.png": (1, 20_000), "long.png": (100_000, 1)}  # 4 GB and a crash before
    for name, size in sizes.items():
        Image.new("L", size, 128).save(images / name, format="PNG", optimize=True)
        assert os.path.getsize(images / name) < 1000
    rows = [("face.png", 30), ("strip.png", 20), ("long.png", 20)]
    started = time.monotonic()
    proc, peak_mb = peak_memory.run(
        _cli(f"--labels={_labels(tmp_path / 'labels.csv', rows)}", f"--images={images}",
             f"--output_dir={out}"), timeout=300, env=_environ(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 120
    assert peak_mb < 1_000  # a normal job's few hundred MB; the strip alone took 4 GB before
    errors = {e["file_name"]: e for e in _errors(str(out))}
    assert {n: e["reason"] for n, e in errors.items()} == dict.fromkeys(
        sizes, reasons.EXTREME_ASPECT_RATIO)
    assert "aspect ratio 20000.0 > max_aspect_ratio 10" in errors["strip.png"]["detail"]
    with open(out / "stats.json") as f:
        stats = json.load(f)
    assert (stats["max_pixels"], stats["max_aspect_ratio"]) == (40_000_000, 10.0)


def test_max_aspect_ratio_is_a_flag_recorded_with_the_framing(tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    _png(str(images / "square.png"))
    _png(str(images / "wide.png"), size=(64, 32))
    stats = run_module.run([
        f"--labels={_labels(tmp_path / 'l.csv', [('square.png', 30), ('wide.png', 31)])}",
        f"--images={images}", f"--output_dir={out}", f"--image_size={SIZE}",
        "--max_aspect_ratio=1.5", "--max_pixels=5000"])
    assert stats["rejects"] == {reasons.EXTREME_ASPECT_RATIO: 1}
    assert (stats["max_pixels"], stats["max_aspect_ratio"]) == (5000, 1.5)
    assert (stats["image_size"], stats["resize"], stats["margin"]) == (SIZE, "crop", 0.0)


# --- 3. one job per output folder --------------------------------------------------------

def _dataset(tmp_path, tag, n, colour_base):
    """A labels file and images folder whose records are recognisable by their names."""
    images = tmp_path / f"images_{tag}"
    rows = []
    for i in range(n):
        _png(str(images / f"{tag}{i:03d}.png"), colour=(colour_base, i * 7 % 256, 50))
        rows.append((f"{tag}{i:03d}.png", 20 + i % 50))
    return _labels(tmp_path / f"labels_{tag}.csv", rows), str(images)


def _wait_for(path_exists, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not path_exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)


def _assert_output_is(out_read, names_of_run, n):
    """OUT holds exactly one run's records, complete: stats.json, shards and names agree."""
    stats, names = out_read()
    assert stats["inputs"] == n and sum(s["count"] for s in stats["splits"].values()) == n
    assert sorted(names) == sorted(names_of_run)


def _local_output(out):
    def read():
        with open(os.path.join(out, "stats.json")) as f:
            stats = json.load(f)
        for split, entry in stats["splits"].items():
            for i in range(len(entry["shard_lengths"])):
                path = os.path.join(out, schema.shard_name(split, i, entry["num_shards"]))
                assert os.path.exists(path), path
        shards = sorted(n for n in os.listdir(out) if "-of-" in n)
        assert len(shards) == sum(e["num_shards"] for e in stats["splits"].values())
        return stats, _record_ids_and_names(out)[1]
    return read


@pytest.mark.slow
def test_a_second_run_into_a_locked_output_fails_fast_and_nothing_is_lost(tmp_path):
    labels_a, images_a = _dataset(tmp_path, "a", 12, 10)
    labels_b, images_b = _dataset(tmp_path, "b", 9, 200)
    out = str(tmp_path / "out")
    env = _environ()
    first = subprocess.Popen(_cli(f"--labels={labels_a}", f"--images={images_a}",
                                  f"--output_dir={out}"), env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock_file = os.path.join(out, lock.LOCK_FILE)
        # Written once its flock is held: then the holder (pid, host, start) can be named.
        _wait_for(lambda: os.path.exists(lock_file) and os.path.getsize(lock_file), first)
        first.send_signal(signal.SIGSTOP)  # the first run is mid-way, holding the lock
        started = time.monotonic()
        second = subprocess.run(_cli(f"--labels={labels_b}", f"--images={images_b}",
                                     f"--output_dir={out}"),
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert time.monotonic() - started < 60
        assert second.returncode == 1
        message = second.stderr.strip().splitlines()[-1]
        assert message.startswith("preprocessing.run: error: another preprocessing run")
        assert f"{out}/{lock.LOCK_FILE}" in message and f"rm {out}/{lock.LOCK_FILE}" in message
        assert f'"pid": {first.pid}' in message
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    _assert_output_is(_local_output(out), [f"a{i:03d}.png" for i in range(12)], 12)
    assert not os.path.exists(os.path.join(out, lock.LOCK_FILE))
    assert not os.path.exists(os.path.join(out, ".staging"))


@pytest.mark.slow
def test_two_runs_started_together_never_both_succeed_with_mixed_or_lost_data(tmp_path):
    labels_a, images_a = _dataset(tmp_path, "a", 10, 10)
    labels_b, images_b = _dataset(tmp_path, "b", 7, 200)
    out = str(tmp_path / "out")
    procs = {tag: subprocess.Popen(_cli(f"--labels={lab}", f"--images={img}",
                                        f"--output_dir={out}"),
                                   env=_environ(), cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
             for tag, lab, img in (("a", labels_a, images_a), ("b", labels_b, images_b))}
    results = {tag: (p.communicate(timeout=400)[1], p.returncode) for tag, p in procs.items()}
    winners = [tag for tag, (_, code) in results.items() if code == 0]
    for err, code in results.values():
        assert code in (0, 1), err[-3000:]
        if code == 1:
            assert "another preprocessing run is writing to this --output_dir" in err
    assert winners  # at least one run got through
    # Whoever published last, the output is that run's, whole: never a mix of the two.
    _, names = _local_output(out)()
    last = "a" if names[0].startswith("a") else "b"
    assert last in winners
    _assert_output_is(_local_output(out), [f"{last}{i:03d}.png"
                                           for i in range(10 if last == "a" else 7)],
                      10 if last == "a" else 7)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_simply_run_again(tmp_path):
    labels_a, images_a = _dataset(tmp_path, "a", 8, 10)
    out = str(tmp_path / "out")
    argv = _cli(f"--labels={labels_a}", f"--images={images_a}", f"--output_dir={out}")
    first = subprocess.Popen(argv, env=_environ(), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _wait_for(lambda: os.path.isdir(os.path.join(out, ".staging")), first)
    first.kill()
    first.wait()
    assert os.path.exists(os.path.join(out, lock.LOCK_FILE))  # left behind, stale
    again = subprocess.run(argv, env=_environ(), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "took over" in again.stderr and "no longer going" in again.stderr
    _assert_output_is(_local_output(out), [f"a{i:03d}.png" for i in range(8)], 8)


def _stop_between_requests(proc, emulator):
    """SIGSTOPs ``proc`` at a moment it is not half-way through a request: the emulator serves
    one request at a time, so a client stopped mid-request would stall every other client."""
    import requests

    for _ in range(20):
        proc.send_signal(signal.SIGSTOP)
        try:
            requests.get(f"{emulator}/storage/v1/b", timeout=3)
            return
        except requests.exceptions.Timeout:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.2)
    raise AssertionError("could not stop the first run between two of its requests")


@pytest.mark.slow
def test_one_run_per_output_folder_on_gcs(tmp_path, gcs_bucket, gcs_emulator):
    from google.cloud import storage

    bucket = storage.Client().bucket(gcs_bucket)
    labels_a, images_a = _dataset(tmp_path, "a", 6, 10)
    labels_b, images_b = _dataset(tmp_path, "b", 5, 200)
    out, lock_name = f"gs://{gcs_bucket}/out", "out/" + lock.LOCK_FILE
    env = _environ(STORAGE_EMULATOR_HOST=gcs_emulator, GOOGLE_CLOUD_PROJECT="test-project")
    first = subprocess.Popen(_cli(f"--labels={labels_a}", f"--images={images_a}",
                                  f"--output_dir={out}"), env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: bucket.blob(lock_name).exists(), first, seconds=180)
        _stop_between_requests(first, gcs_emulator)
        second = subprocess.run(_cli(f"--labels={labels_b}", f"--images={images_b}",
                                     f"--output_dir={out}"),
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr[-3000:]
        assert f"{out}/{lock.LOCK_FILE}" in second.stderr
        assert f"gcloud storage rm {out}/{lock.LOCK_FILE}" in second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=400)
    assert first.returncode == 0, err[-3000:]
    assert not bucket.blob(lock_name).exists()
    stats = json.loads(bucket.blob("out/stats.json").download_as_text())
    assert stats["inputs"] == 6 and sum(s["count"] for s in stats["splits"].values()) == 6
    shards = sorted(b.name for b in bucket.list_blobs(prefix="out/") if "-of-" in b.name)
    assert len(shards) == sum(e["num_shards"] for e in stats["splits"].values())
    assert not list(bucket.list_blobs(prefix="out/.staging/"))


def test_a_gcs_lock_of_a_dead_local_process_is_taken_over_and_others_are_not(
        gcs_bucket, gcs_emulator):
    from google.cloud import storage

    blob = storage.Client().bucket(gcs_bucket).blob("out/" + lock.LOCK_FILE)
    out = f"gs://{gcs_bucket}/out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"run_id": "x", "host": socket.gethostname(), "pid": dead.pid, "pid_start": None}
    blob.upload_from_string(json.dumps(holder))
    with lock.held(out) as held:  # the holder is gone: taken over
        assert json.loads(blob.download_as_text())["run_id"] == held.run_id
        with pytest.raises(lock.OutputLockedError, match="another preprocessing run"):
            lock.acquire(out, "second")  # a live holder (this process): refused
    assert not blob.exists()
    blob.upload_from_string(json.dumps(dict(holder, host="elsewhere")))
    with pytest.raises(lock.OutputLockedError, match="cannot tell whether its holder"):
        lock.acquire(out, "third")  # another machine's lock: left for a human to judge


def test_publish_refuses_staged_shards_that_do_not_match_stats(tmp_path):
    from preprocessing import metadata

    images, out = tmp_path / "images", tmp_path / "out"
    _png(str(images / "a.png"))
    run_module.run([f"--labels={_labels(tmp_path / 'l.csv', [('a.png', 30)])}",
                    f"--images={images}", f"--output_dir={out}", f"--image_size={SIZE}",
                    "--num_shards=1"])
    before = {n: (out / n).read_bytes() for n in os.listdir(out) if "-of-" in n}
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "stats.json").write_bytes((out / "stats.json").read_bytes())
    for name, data in before.items():
        (staging / name).write_bytes(data)
    (staging / "train-00001-of-00002").write_bytes(b"another run's shard")
    with pytest.raises(metadata.StagingError, match="unexpected"):
        metadata.publish(str(staging), str(out), SIZE, [])
    assert {n: (out / n).read_bytes() for n in os.listdir(out) if "-of-" in n} == before


# --- 4. reserved column names ------------------------------------------------------------

@pytest.mark.parametrize("column", ["id", "blur", "brightness", "filename", "true_age"])
def test_reserved_column_names_are_refused_before_any_image_is_read(tmp_path, column):
    out = tmp_path / "out"
    csv_path = _labels(tmp_path / "l.csv", [("never-read.png", 30, "p1")],
                       header=f"file_name,real_age,{column}")
    (tmp_path / "images").mkdir()
    proc = subprocess.run(_cli(f"--labels={csv_path}", f"--images={tmp_path / 'images'}",
                               f"--output_dir={out}", f"--group_by={column}"),
                          capture_output=True, text=True, timeout=120, env=_environ(), cwd=ROOT)
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
    _png(str(images / "a.png"))
    (tmp_path / "a_file").write_text("x")
    out = {"file": tmp_path / "a_file", "inside_a_file": tmp_path / "a_file" / "out",
           # root writes through any mode bits: sysfs refuses everyone
           "unwritable": "/sys/kernel" if os.geteuid() == 0 else tmp_path / "ro"}[kind]
    if kind == "unwritable" and os.geteuid() != 0:
        out.mkdir(mode=0o555)
    proc = subprocess.run(_cli(f"--labels={_labels(tmp_path / 'l.csv', [('a.png', 3)])}",
                               f"--images={images}", f"--output_dir={out}"),
                          capture_output=True, text=True, timeout=120, env=_environ(), cwd=ROOT)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"preprocessing.run: error: --output_dir={out}: ")
    assert {"file": "is a file, not a folder", "inside_a_file": "is inside the file",
            "unwritable": "cannot write in it"}[kind] in last


def test_cr_only_csv_unstripped_names_and_strict_ages(tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    _png(str(images / " spaced .png"))
    _png(str(images / "plain.png"), colour=(1, 2, 3))
    _png(str(images / "ten.png"), colour=(4, 5, 6))
    rows = [(" spaced .png", " 30 "), ("plain.png", "41"), (" plain.png", "42"),
            ("ten.png", "1_0")] + [(f"x{i}.png", age) for i, age in enumerate(
                ["nan", "inf", "1e1", "\uff13\uff14", "0x1f", "--3"])]
    text = "file_name,real_age\r" + "".join(f"{n},{a}\r" for n, a in rows)  # old Mac endings
    (tmp_path / "l.csv").write_bytes(text.encode("utf-8"))
    stats = run_module.run([f"--labels={tmp_path / 'l.csv'}", f"--images={images}",
                            f"--output_dir={out}", f"--image_size={SIZE}"])
    errors = {e["file_name"]: e for e in _errors(str(out))}
    assert errors[" plain.png"]["reason"] == reasons.MISSING_FILE
    assert "starts or ends with a space" in errors[" plain.png"]["detail"]
    assert {n: errors[n]["reason"] for n in ["ten.png"] + [f"x{i}.png" for i in range(6)]} == \
        dict.fromkeys(["ten.png"] + [f"x{i}.png" for i in range(6)], reasons.BAD_AGE)
    assert sorted(_record_ids_and_names(str(out))[1]) == [" spaced .png", "plain.png"]
    assert stats["inputs"] == len(rows)


@pytest.mark.parametrize("text,age", [("34", 34.0), ("+7", 7.0), ("0.5", 0.5), (".5", 0.5),
                                      ("34.", 34.0), ("034", 34.0)])
def test_plain_decimal_ages_are_read(text, age):
    assert labels.parse_age(text, 120) == age
