"""Does the Beam job's memory or speed depend on the data set's size? 20,000 vs 200,000 images.

    python -m bench.preprocess_scaling [--sizes=20000,200000] [--workers=2] [--work_dir=DIR]

For each size: distinct synthetic 64 px faces (preprocessing.synthetic), then the plain
multiprocessing loop of bench.preprocess_throughput and the real job
(``python -m preprocessing.run``, DirectRunner multi_processing) on the same files. A sampler
reads every process's peak RSS (VmHWM) in the job's process tree while it runs: state held per
input (dedup claims, shard plans, stats) would show as a runner peak that grows with the size,
and the runner's own CPU seconds show what it takes from the workers on the same cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.preprocess_throughput import plain_loop
from contract.framing import Framing
from imaging import images
from preprocessing.pipeline import PROGRESS_EVERY

# A worker's progress line as the runner relays it, with the worker's own timestamp.
_PROGRESS = re.compile(r'seconds:\s*(\d+)\s+nanos:\s*(\d+)\s*\}\s*message:\s*"this worker has '
                       r'loaded \d+ images')


def _children(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = []
        # Children hang off the thread that forked them, not only the main one.
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids += (task / "children").read_text().split()
            except OSError:
                continue
        found += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return found


def _hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (children excluded)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def image_stage_rate(log: str) -> float | None:
    """Images/s of the load stage alone, from the workers' progress lines in the job's log (one
    per PROGRESS_EVERY images per worker): start-up, the label stage and everything after the
    images are left out, so sizes compare on the work that grows with them."""
    times = sorted(int(s) + int(n) / 1e9 for s, n in _PROGRESS.findall(log))
    if len(times) < 3 or times[-1] <= times[0]:
        return None
    return PROGRESS_EVERY * (len(times) - 1) / (times[-1] - times[0])


def run_sampled(cmd: list[str]) -> dict:
    """Seconds, runner and largest-worker peak RSS (MB), worker count and the runner's own CPU
    seconds of one command, sampled every 0.1 s."""
    peaks: dict[int, float] = {}
    runner_cpu = 0.0
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def sample():
        nonlocal runner_cpu
        while not stop.is_set():
            runner_cpu = _cpu_s(proc.pid) or runner_cpu
            for pid in [proc.pid, *_children(proc.pid)]:
                mb = _hwm_mb(pid)
                if mb is not None:
                    peaks[pid] = max(peaks.get(pid, 0.0), mb)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    workers = [mb for pid, mb in peaks.items() if pid != proc.pid]
    return {"seconds": seconds, "runner_mb": peaks.get(proc.pid, 0.0),
            "worker_mb": max(workers, default=0.0), "workers": len(workers),
            "runner_cpu_s": runner_cpu, "image_stage_rate": image_stage_rate(err)}


def make_sample(folder: Path, size: int) -> list:
    if not (folder / "labels.csv").exists():
        subprocess.run([sys.executable, "-m", "preprocessing.synthetic", f"--output_dir={folder}",
                        f"--num_images={size}", "--image_size=64", "--seed=7"], check=True)
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    tasks = [(str(folder / "images" / r["file_name"]), r["file_name"], float(r["real_age"]),
              {"gender": r["gender"]}) for r in rows]
    for path, *_ in tasks:  # warm the page cache for both contenders
        Path(path).read_bytes()
    return tasks


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="20000,200000")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work_dir", default="/tmp/face-age-scaling")
    p.add_argument("--keep", action="store_true", help="keep the generated images")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("| images | loop img/s | job img/s | job / loop | job's image stage img/s | "
          "runner peak RSS | worker peak RSS | runner CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    config = images.ImageConfig(Framing(image_size=64))
    for size in (int(s) for s in args.sizes.split(",")):
        folder = work / f"sample_{size}"
        tasks = make_sample(folder, size)
        _, loop_s = plain_loop(tasks, config, args.workers, str(work / "loop.tfrecord"))
        out = work / f"out_{size}"
        shutil.rmtree(out, ignore_errors=True)
        job = run_sampled([
            sys.executable, "-m", "preprocessing.run", f"--labels={folder / 'labels.csv'}",
            f"--images={folder / 'images'}", f"--output_dir={out}", "--image_size=64",
            "--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"])
        stage = job["image_stage_rate"]
        print(f"| {size:,} | {size / loop_s:,.0f} | {size / job['seconds']:,.0f} | "
              f"{loop_s / job['seconds']:.2f}x | {'-' if stage is None else f'{stage:,.0f}'} | "
              f"{job['runner_mb']:,.0f} MB | "
              f"{job['worker_mb']:,.0f} MB ({job['workers']} workers) | "
              f"{job['runner_cpu_s']:.1f} |", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
