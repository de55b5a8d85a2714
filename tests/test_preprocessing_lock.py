"""One job per output folder: a second run, runs started together, a killed run, and the same
on the GCS emulator, all as real ``python -m preprocessing.run`` processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from preprocessing_cli import (
    ROOT,
    SIZE,
    cli,
    environ,
    labels_csv,
    png,
    record_ids_and_names,
)

from contract import schema
from preprocessing import lock
from preprocessing import run as run_module


def _dataset(tmp_path, tag, n, colour_base):
    """A labels file and images folder whose records are recognisable by their names."""
    images = tmp_path / f"images_{tag}"
    rows = []
    for i in range(n):
        png(str(images / f"{tag}{i:03d}.png"), colour=(colour_base, i * 7 % 256, 50))
        rows.append((f"{tag}{i:03d}.png", 20 + i % 50))
    return labels_csv(tmp_path / f"labels_{tag}.csv", rows), str(images)


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
        return stats, record_ids_and_names(out)[1]
    return read


@pytest.mark.slow
def test_a_second_run_into_a_locked_output_fails_fast_and_nothing_is_lost(tmp_path):
    labels_a, images_a = _dataset(tmp_path, "a", 12, 10)
    labels_b, images_b = _dataset(tmp_path, "b", 9, 200)
    out = str(tmp_path / "out")
    env = environ()
    first = subprocess.Popen(cli(f"--labels={labels_a}", f"--images={images_a}",
                                  f"--output_dir={out}"), env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock_file = os.path.join(out, lock.LOCK_FILE)
        # Written once its flock is held: then the holder (pid, host, start) can be named.
        _wait_for(lambda: os.path.exists(lock_file) and os.path.getsize(lock_file), first)
        first.send_signal(signal.SIGSTOP)  # the first run is mid-way, holding the lock
        started = time.monotonic()
        second = subprocess.run(cli(f"--labels={labels_b}", f"--images={images_b}",
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
    procs = {tag: subprocess.Popen(cli(f"--labels={lab}", f"--images={img}",
                                        f"--output_dir={out}"),
                                   env=environ(), cwd=ROOT, stdout=subprocess.PIPE,
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
    argv = cli(f"--labels={labels_a}", f"--images={images_a}", f"--output_dir={out}")
    first = subprocess.Popen(argv, env=environ(), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _wait_for(lambda: os.path.isdir(os.path.join(out, ".staging")), first)
    first.kill()
    first.wait()
    assert os.path.exists(os.path.join(out, lock.LOCK_FILE))  # left behind, stale
    again = subprocess.run(argv, env=environ(), cwd=ROOT, capture_output=True, text=True,
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
    env = environ(STORAGE_EMULATOR_HOST=gcs_emulator, GOOGLE_CLOUD_PROJECT="test-project")
    first = subprocess.Popen(cli(f"--labels={labels_a}", f"--images={images_a}",
                                  f"--output_dir={out}"), env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: bucket.blob(lock_name).exists(), first, seconds=180)
        _stop_between_requests(first, gcs_emulator)
        second = subprocess.run(cli(f"--labels={labels_b}", f"--images={images_b}",
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
    from preprocessing import publish

    images, out = tmp_path / "images", tmp_path / "out"
    png(str(images / "a.png"))
    run_module.run([f"--labels={labels_csv(tmp_path / 'l.csv', [('a.png', 30)])}",
                    f"--images={images}", f"--output_dir={out}", f"--image_size={SIZE}",
                    "--num_shards=1"])
    before = {n: (out / n).read_bytes() for n in os.listdir(out) if "-of-" in n}
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "stats.json").write_bytes((out / "stats.json").read_bytes())
    for name, data in before.items():
        (staging / name).write_bytes(data)
    (staging / "train-00001-of-00002").write_bytes(b"another run's shard")
    with pytest.raises(publish.StagingError, match="unexpected"):
        publish.publish(str(staging), str(out), SIZE, [])
    assert {n: (out / n).read_bytes() for n in os.listdir(out) if "-of-" in n} == before
