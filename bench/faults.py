"""Hostile, damaged and concurrent inputs against every stage, as one table.

    python -m bench.faults [--work_dir=bench_out/faults] [--timeout=180]

Every case runs the real command in a fresh process. Per class of fault the table counts the
inputs tried, crashes (a traceback, or killed by a signal), hangs (killed at --timeout), wrong
outcomes (an input that became neither a record nor a dead letter, a wrong accept, data lost or
mixed while exiting 0, an error that names no input), reads outside the named folder (a canary
beside --images became a record, or its size leaked into a message), and the peak RSS of the
worst hostile input over the same command on normal faces, measured in the same run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import fault_inputs as fi
from contract import stats as stats_file

PY = sys.executable
_SERVE = ("import sys, tensorflow as tf\n"
          "m = tf.saved_model.load(sys.argv[1])\n"
          "try:\n"
          "    print(m.signatures['serving_default'](image_bytes=tf.constant([open(sys.argv[2], "
          "'rb').read()]))['age'].numpy())\n"
          "except tf.errors.InvalidArgumentError as e:\n"
          "    print(e.message.splitlines()[0], file=sys.stderr); sys.exit(3)\n")


@dataclasses.dataclass
class Outcome:
    code: int | None  # None: hung and killed
    out: str
    err: str
    peak_mb: float

    @property
    def crashed(self) -> bool:
        return self.code is not None and (self.code < 0 or "Traceback (most recent" in self.err)


@dataclasses.dataclass
class Row:
    name: str
    tried: int = 0
    crashes: int = 0
    hangs: int = 0
    wrong: int = 0
    outside: int = 0
    peak_ratio: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def count(self, outcome: Outcome) -> Outcome:
        self.tried += 1
        self.hangs += outcome.code is None
        self.crashes += outcome.crashed
        return outcome

    def fail(self, note: str) -> None:
        self.wrong += 1
        self.notes.append(note)


def run(cmd: list[str], timeout: float, log: Path) -> Outcome:
    """Runs cmd in its own process group; peak RSS covers it and every child it waited for."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        hung = threading.Event()

        def kill():
            hung.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(None if hung.is_set() else proc.returncode, log.with_suffix(".out").read_text(),
                   log.with_suffix(".err").read_text(), usage.ru_maxrss / 1024)


class Bench:
    def __init__(self, work: Path, timeout: float):
        self.work, self.timeout, self.logs = work, timeout, 0

    def run(self, cmd: list[str]) -> Outcome:
        self.logs += 1
        return run(cmd, self.timeout, self.work / "logs" / f"{self.logs:03d}")

    def sample(self, name: str, num: int, seed: int) -> Path:
        out = self.work / name
        self.run([PY, "-m", "preprocessing.synthetic", f"--output_dir={out}", f"--num_images={num}",
                  "--image_size=64", f"--seed={seed}"])
        return out

    def preprocess(self, labels: Path, images: Path, out: Path, *extra: str) -> Outcome:
        return self.run([PY, "-m", "preprocessing.run", f"--labels={labels}", f"--images={images}",
                         f"--output_dir={out}", "--image_size=32", "--num_shards=2",
                         "--direct_running_mode=in_memory", *extra])


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _write_csv(path: Path, rows: list[list[str]], newline: str = "\n") -> Path:
    path.write_text(newline.join(",".join(r) for r in rows) + newline)
    return path


def _stats(out: Path) -> stats_file.Stats:
    return stats_file.read(str(out))


def _records(out: Path) -> int:
    return sum(s.count for s in _stats(out).splits.values())


def published_consistently(out: Path) -> str:
    """'' when OUT's shards are exactly those stats.json describes (names, bytes, records)."""
    if not (out / "stats.json").exists():
        return "no stats.json"
    stats = _stats(out)
    expected = set()
    for split, s in stats.splits.items():
        names = [f"{split}-{i:05d}-of-{s.num_shards:05d}" for i in range(s.num_shards)]
        expected.update(names)
        sizes = [(out / n).stat().st_size if (out / n).exists() else -1 for n in names]
        if -1 in sizes or sum(sizes) != s.num_bytes:
            return f"{split}: shard files missing or bytes differ from stats.json"
        counts = [len(fi.tfrecord_offsets((out / n).read_bytes())) for n in names]
        if tuple(counts) != s.shard_lengths:
            return f"{split}: records {counts} != stats.json {list(s.shard_lengths)}"
    present = {p.name for p in out.glob("*-of-*")}
    return f"foreign shards {sorted(present - expected)}" if present - expected else ""


def case_outside(b: Bench, base: Path) -> Row:
    row, case = Row("paths outside --images, FIFO, /dev/zero"), b.work / "outside"
    images, outside = case / "images", case / "outside"
    shutil.copytree(base / "images", images)
    outside.mkdir()
    (outside / "canary.jpg").write_bytes(fi.canary(next(images.glob("*.jpg")).read_bytes()))
    good = _read_csv(base / "labels.csv")
    hostile = fi.outside_rows(images, outside)
    normal = b.preprocess(_write_csv(case / "good.csv", good), images, case / "normal")
    rows = good + [[name, "50", "0"] for name in hostile]
    o = row.count(b.preprocess(_write_csv(case / "labels.csv", rows), images, case / "out"))
    row.tried += len(hostile) - 1
    if o.code == 0:
        records, rejects = _records(case / "out"), sum(_stats(case / "out").rejects.values())
        row.outside += max(0, records - (len(good) - 1))
        if rejects != len(hostile):
            row.fail(f"{len(hostile)} hostile rows, {rejects} dead letters")
        errors = (case / "out" / "errors" / "errors.jsonl").read_text()
        row.outside += str(fi.CANARY_BYTES) in errors
    row.peak_ratio = o.peak_mb / normal.peak_mb
    return row


def case_bombs_preprocess(b: Bench, base: Path) -> Row:
    row, case = Row("decode bombs: preprocessing"), b.work / "bombs"
    images = case / "images"
    shutil.copytree(base / "images", images)
    good = _read_csv(base / "labels.csv")
    normal = b.preprocess(_write_csv(case / "good.csv", good), images, case / "normal")
    worst = 0.0
    for name, make in fi.BOMBS.items():
        (images / f"{name}.png").write_bytes(make())
        labels = _write_csv(case / f"{name}.csv", good + [[f"{name}.png", "40", "0"]])
        o = row.count(b.preprocess(labels, images, case / name))
        worst = max(worst, o.peak_mb)
        if o.code == 0 and _records(case / name) != len(good) - 1:
            row.fail(f"{name} became a record")
        elif o.code != 0 and not o.crashed and o.code is not None:
            row.fail(f"{name}: job failed ({o.err.strip().splitlines()[-1:]})")
    row.peak_ratio = worst / normal.peak_mb
    return row


def case_bombs_model(b: Bench, base: Path, model: Path, serve: bool) -> Row:
    row = Row("decode bombs: " + ("SavedModel serving_default" if serve else "trainer.predict"))
    case = b.work / ("serve" if serve else "predict")
    case.mkdir()
    face = next((base / "images").glob("*.jpg"))

    def call(path: Path) -> Outcome:
        if serve:
            return b.run([PY, "-c", _SERVE, str(model / "saved_model"), str(path)])
        return b.run([PY, "-m", "trainer.predict", f"--model={model}", str(path)])

    normal = call(face)
    worst = 0.0
    files = {name: make() for name, make in fi.BOMBS.items()}
    files["garbage"] = os.urandom(300)
    for name, data in files.items():
        path = case / f"{name}.png"
        path.write_bytes(data)
        o = row.count(call(path))
        worst = max(worst, o.peak_mb)
        if o.code == 0:
            row.fail(f"{name} was predicted")
        elif not o.crashed and o.code is not None and name not in o.err and not serve:
            row.fail(f"{name}: error does not name the file")
    if not serve:
        tiff = case / "face.tiff"
        tiff.write_bytes(fi.tiff(face.read_bytes()))
        if row.count(call(tiff)).code != 0:
            row.fail("TIFF face (accepted by preprocessing) not predicted")
    row.peak_ratio = worst / normal.peak_mb
    return row


def _preprocess_into(b: Bench, data: Path, out: Path, done: dict, key: str) -> None:
    done[key] = b.preprocess(data / "labels.csv", data / "images", out)


def case_concurrent(b: Bench) -> Row:
    row = Row("two runs into one --output_dir")
    a, c = b.sample("concurrent_a", 40, 1), b.sample("concurrent_b", 40, 2)
    for trial, delay in enumerate((0.0, 0.4, 1.5)):
        out = b.work / f"concurrent_out_{trial}"
        done: dict[str, Outcome] = {}
        threads = []
        for key, data in (("a", a), ("b", c)):
            threads.append(threading.Thread(target=_preprocess_into,
                                            args=(b, data, out, done, key)))
            threads[-1].start()
            time.sleep(delay)
        for t in threads:
            t.join()
        for o in done.values():
            row.count(o)
        winners = [k for k, o in done.items() if o.code == 0]
        problem = published_consistently(out) if winners else "neither run published"
        if problem:
            row.fail(f"delay {delay}s: exits {[o.code for o in done.values()]}: {problem}")
    return row


def case_damaged(b: Bench, records: Path, model: Path) -> Row:
    row = Row("damaged shards: evaluate")
    damages = {"truncated at a record boundary": fi.drop_last_record,
               "byte flipped mid-record": fi.flip_byte_mid_record,
               "shard deleted": Path.unlink}
    for i, (name, damage) in enumerate(damages.items()):
        copy = b.work / f"damaged_{i}"
        shutil.copytree(records, copy)
        shard = sorted(copy.glob("train-*"))[0]
        damage(shard)
        o = row.count(b.run([PY, "-m", "trainer.evaluate", f"--model={model}",
                             f"--data_dir={copy}", "--split=train",
                             f"--output_dir={copy}/eval"]))
        if o.code == 0:
            row.fail(f"{name}: evaluated without an error")
        elif shard.name not in o.err:
            row.fail(f"{name}: the error does not name {shard.name}")
    return row


def case_labels(b: Bench, base: Path, model: Path) -> Row:
    row, case = Row("label files: reserved names, CR-only, spaces, 1_0"), b.work / "labels"
    case.mkdir()
    images = base / "images"
    good = _read_csv(base / "labels.csv")[1:11]
    for column in ("id", "blur", "brightness", "filename"):
        labels = _write_csv(case / f"{column}.csv", [["file_name", "real_age", column]]
                            + [[r[0], r[1], f"p{i}"] for i, r in enumerate(good)])
        out = case / f"reserved_{column}"
        o = row.count(b.preprocess(labels, images, out, f"--group_by={column}"))
        if o.code == 0:
            ev = row.count(b.run([PY, "-m", "trainer.evaluate", f"--model={model}",
                                  f"--data_dir={out}", "--split=train",
                                  f"--output_dir={out}/eval"]))
            if ev.code != 0:
                row.fail(f"column {column!r} accepted by preprocessing, refused by evaluate")
        elif not ("reserved" in o.err.lower() or "rename" in o.err.lower()) or o.crashed:
            row.fail(f"column {column!r} refused without saying why or how to fix it")
    cr = _write_csv(case / "cr.csv", [["file_name", "real_age"]] + [r[:2] for r in good], "\r")
    o = row.count(b.preprocess(cr, images, case / "cr"))
    if o.code != 0 or _records(case / "cr") != len(good):
        row.fail("CR-only CSV not read")
    spaced = case / "spaced"
    spaced.mkdir()
    shutil.copy(images / good[0][0], spaced / f" {good[0][0]} ")
    shutil.copy(images / good[1][0], spaced / good[1][0])
    labels = _write_csv(case / "spaced.csv", [["file_name", "real_age"], [f" {good[0][0]} ", "30"],
                                              [good[1][0], "1_0"]])
    o = row.count(b.preprocess(labels, spaced, case / "spaced_out"))
    if o.code != 0 or _records(case / "spaced_out") != 1:
        row.fail("a name with spaces lost, or '1_0' read as an age")
    elif _stats(case / "spaced_out").rejects.get("bad_age") != 1:
        row.fail("'1_0' read as an age (and the spaced name lost)")
    return row


def print_table(rows: list[Row]) -> None:
    print("| class | inputs tried | crashes | hangs | wrong | outside reads | peak RSS vs normal |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        peak = f"{r.peak_ratio:.2f}x" if r.peak_ratio is not None else "-"
        print(f"| {r.name} | {r.tried} | {r.crashes} | {r.hangs} | {r.wrong} | {r.outside} "
              f"| {peak} |")
    for r in rows:
        for note in r.notes:
            print(f"  {r.name}: {note}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work_dir", default="bench_out/faults")
    p.add_argument("--timeout", type=float, default=180)
    args = p.parse_args(argv)
    work = Path(args.work_dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    b = Bench(work, args.timeout)
    base = b.sample("base", 60, 0)
    records = work / "records"
    b.preprocess(base / "labels.csv", base / "images", records)
    model = work / "model"
    trained = b.run([PY, "-m", "trainer.task", f"--data_dir={records}", f"--model_dir={model}",
                     "--backbone=tiny", "--weights=none", "--epochs=1", "--freeze_epochs=0",
                     "--batch_size=8", "--steps_per_epoch=2", "--bn_recalibration_batches=1"])
    if trained.code != 0:
        print(trained.err[-3000:], file=sys.stderr)
        return 1
    rows = [case_outside(b, base), case_bombs_preprocess(b, base),
            case_bombs_model(b, base, model, serve=False),
            case_bombs_model(b, base, model, serve=True), case_concurrent(b),
            case_damaged(b, records, model), case_labels(b, base, model)]
    print_table(rows)
    bad = sum(r.crashes + r.hangs + r.wrong + r.outside for r in rows)
    over = [r.name for r in rows if r.peak_ratio and r.peak_ratio > 1.5]
    print(f"faults: {bad}; classes over the 1.5x memory bound: {over or 'none'}")
    return 1 if bad or over else 0


if __name__ == "__main__":
    sys.exit(main())
