"""Images per second of the Beam preprocessing job vs a plain multiprocessing loop, same run.

    python -m bench.preprocess_throughput --data_dir ../shared/data/utkface [--limit 4000]

Both do the same per-image work on the same files (``images.process``, ``schema.encode``,
TFRecord writes); the Beam job (DirectRunner, multi_processing) also deduplicates, splits,
dead-letters and writes stats and TFDS metadata, and is timed whole, worker start-up included.
The page cache is warmed first. Outputs go to a fresh /tmp folder (kept with --keep); the data
set is research-licensed and never committed.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import statistics
import time

from bench import workdir
from contract import schema
from contract.framing import Framing
from imaging import images
from preprocessing import options, pipeline, records, tfrecord_writer

_CONFIG: images.ImageConfig | None = None


def _init_worker(config: images.ImageConfig) -> None:
    global _CONFIG
    _CONFIG = config


def _one_image(task):
    """The loop's per-image work: the same pure functions the pipeline's DoFn calls."""
    path, file_name, age, extra = task
    with open(path, "rb") as f:
        data = f.read()
    try:
        image = images.process(data, _CONFIG)
    except images.ImageError:
        return None
    return schema.encode(records.face_record(file_name, age, extra, image, data), list(extra))


def plain_loop(tasks, config, workers: int, output_path: str) -> tuple[int, float]:
    """(records written, seconds) for a Pool(workers) doing decode-resize-encode-write."""
    started = time.perf_counter()
    written = 0
    with multiprocessing.get_context("spawn").Pool(
            workers, initializer=_init_worker, initargs=(config,)) as pool, \
            open(output_path, "wb") as out:
        for payload in pool.imap(_one_image, tasks, chunksize=64):
            if payload is not None:
                out.write(tfrecord_writer.tfrecord_frames([payload]))
                written += 1
    return written, time.perf_counter() - started


def beam_job(labels_csv, images_dir, output_dir, image_size, workers) -> tuple[int, float]:
    config, pipeline_options = options.parse([
        f"--labels={labels_csv}", f"--images={images_dir}", f"--output_dir={output_dir}",
        f"--image_size={image_size}", "--runner=DirectRunner",
        "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"])
    started = time.perf_counter()
    stats = pipeline.run(config, pipeline_options)
    seconds = time.perf_counter() - started
    return sum(s["count"] for s in stats["splits"].values()), seconds


def _subset(data_dir: str, limit: int, work_dir: str) -> tuple[str, list]:
    """Writes the first ``limit`` label rows to WORK/labels.csv; returns it and the loop's tasks."""
    with open(os.path.join(data_dir, "labels.csv"), newline="") as f:
        rows = list(csv.DictReader(f))[:limit]
    labels_csv = os.path.join(work_dir, "labels.csv")
    with open(labels_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    images_dir = os.path.join(data_dir, "images")
    tasks = [(os.path.join(images_dir, r["file_name"]), r["file_name"], float(r["real_age"]),
              {k: v for k, v in r.items() if k not in ("file_name", "real_age")}) for r in rows]
    for path, *_ in tasks:  # warm the page cache for both contenders
        with open(path, "rb") as f:
            f.read()
    return labels_csv, tasks


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="folder with labels.csv and images/")
    parser.add_argument("--limit", type=int, default=4000, help="first N label rows")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1,
                        help="alternate loop and Beam this many times; report the medians "
                             "(the CPU may be shared, so single runs are noisy)")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp output folder")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]  # other jobs on a shared machine skew both figures
    with workdir.scratch("face-age-preprocess-bench-", args.keep) as work_dir:
        labels_csv, tasks = _subset(args.data_dir, args.limit, work_dir)
        config = images.ImageConfig(Framing(image_size=args.image_size))
        loop_times, beam_times = [], []
        for _ in range(args.repeats):
            loop_n, seconds = plain_loop(tasks, config, args.workers,
                                         os.path.join(work_dir, "loop.tfrecord"))
            loop_times.append(seconds)
            beam_n, seconds = beam_job(labels_csv, os.path.join(args.data_dir, "images"),
                                       os.path.join(work_dir, "beam"), args.image_size,
                                       args.workers)
            beam_times.append(seconds)
        loop_s, beam_s = statistics.median(loop_times), statistics.median(beam_times)
        loop_rate, beam_rate = len(tasks) / loop_s, len(tasks) / beam_s
        print(f"inputs: {len(tasks)} images from {args.data_dir}, {args.image_size} px, "
              f"{args.workers} processes each, median of {args.repeats} run(s); "
              f"load average before: {load_before:.1f}")
        print(f"plain multiprocessing loop: {loop_rate:8.1f} images/s "
              f"({loop_n} records in {loop_s:.1f} s)")
        print(f"Beam DirectRunner (multi_processing): {beam_rate:8.1f} images/s "
              f"({beam_n} records in {beam_s:.1f} s; the rest merged or dead-lettered)")
        print(f"ratio Beam / loop: {beam_rate / loop_rate:.2f}x (goal >= 0.70x)")
        # Beam pays a fixed cost per job (starting and stopping the worker processes, the
        # staging swap, TFDS metadata) that a small input cannot amortise. A second, tiny job
        # separates it from the per-image rate, which is what decides a large (Dataflow) job.
        small = max(1, min(200, len(tasks) // 10))
        if len(tasks) > small:
            small_dir = os.path.join(work_dir, "small")
            os.makedirs(small_dir)
            small_csv, _ = _subset(args.data_dir, small, small_dir)
            _, small_s = beam_job(small_csv, os.path.join(args.data_dir, "images"),
                                  os.path.join(small_dir, "beam"), args.image_size,
                                  args.workers)
            marginal = (len(tasks) - small) / max(beam_s - small_s, 1e-9)
            fixed = max(small_s - small / marginal, 0.0)
            print(f"Beam per job: {fixed:.1f} s fixed (from a {small}-image job); per image: "
                  f"{marginal:.1f} images/s = {marginal / loop_rate:.2f}x the loop")


if __name__ == "__main__":
    main()
