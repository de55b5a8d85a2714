r"""Beam preprocessing throughput with --face=detect and --face=align against --face=none, one run.

    python -m bench.face_preprocess [--data_dir=../shared/data/utkface] [--num_scenes=300]

Whole photos composed by preprocessing.scenes (from DATA_DIR's crops, or the public-domain
astronaut) go through ``pipeline.run`` once per --face mode on the DirectRunner. Rates are input
photos per second; a second, --small job per mode separates the fixed start-up cost, so the
marginal rate (N - small) / (T - T_small) is what a large job would see. Scenes live in a /tmp
folder removed afterwards (they may derive from research-licensed faces: never commit them).
"""

from __future__ import annotations

import argparse
import os
import time

from bench import workdir
from preprocessing import options, pipeline, scenes

DEFAULT_AGE = 30  # label of a scene without a face (it is a dead letter under detect/align)


def write_scenes(data_dir: str | None, num_scenes: int, num_sources: int, seed: int,
                 work_dir: str) -> tuple[list[str], str]:
    """Scenes under work_dir -> (their label rows, the images folder)."""
    if data_dir:
        sources = scenes.labelled_crops(os.path.join(data_dir, "images"),
                                        os.path.join(data_dir, "labels.csv"), num_sources, seed)
    else:
        sources = [scenes.astronaut()]
    truth = scenes.read_truth(scenes.write(sources, work_dir, num_scenes, seed))
    rows = []
    for scene in truth:
        areas = [(face["box"][2] - face["box"][0]) * (face["box"][3] - face["box"][1])
                 for face in scene["faces"]]
        age = scene["faces"][areas.index(max(areas))]["age"] if areas else None
        rows.append(f"{os.path.basename(scene['file'])},{DEFAULT_AGE if age is None else age}")
    return rows, os.path.join(work_dir, scenes.SCENES_DIR)


def labels_file(rows: list[str], path: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("file_name,real_age\n" + "".join(row + "\n" for row in rows))
    return path


def beam_job(labels_csv: str, images_dir: str, output_dir: str, image_size: int, workers: int,
             face: str) -> tuple[dict, float]:
    config, pipeline_options = options.parse([
        f"--labels={labels_csv}", f"--images={images_dir}", f"--output_dir={output_dir}",
        f"--image_size={image_size}", f"--face={face}", "--runner=DirectRunner",
        "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"])
    started = time.perf_counter()
    stats = pipeline.run(config, pipeline_options)
    return stats, time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=None,
                        help="aligned face crops: images/ + labels.csv (default: the astronaut)")
    parser.add_argument("--num_scenes", type=int, default=300)
    parser.add_argument("--num_sources", type=int, default=1000,
                        help="distinct crops of --data_dir the scenes draw from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", default="none,detect,align",
                        help="--face modes to run, in this order; the first is the reference")
    parser.add_argument("--small", type=int, default=20,
                        help="scenes of the fixed-cost job per mode (0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp folder")
    args = parser.parse_args(argv)

    with workdir.scratch("face-age-face-preprocess-", args.keep) as work_dir:
        rows, images_dir = write_scenes(args.data_dir, args.num_scenes, args.num_sources,
                                        args.seed, work_dir)
        labels_csv = labels_file(rows, os.path.join(work_dir, "labels.csv"))
        small_csv = labels_file(rows[:args.small], os.path.join(work_dir, "small.csv"))
        for name in os.listdir(images_dir):  # warm the page cache for every mode alike
            with open(os.path.join(images_dir, name), "rb") as f:
                f.read()
        load_before = os.getloadavg()[0]  # other jobs on a shared machine skew the figures
        modes = args.modes.split(",")
        results, small = {}, {}
        for face in modes:
            if 0 < args.small < args.num_scenes:
                small[face] = beam_job(small_csv, images_dir, os.path.join(work_dir, "small"),
                                       args.image_size, args.workers, face)[1]
            results[face] = beam_job(labels_csv, images_dir, os.path.join(work_dir, face),
                                     args.image_size, args.workers, face)
        print(f"inputs: {args.num_scenes} scenes from "
              f"{args.data_dir or 'the astronaut'}, {args.image_size} px records, Beam "
              f"DirectRunner multi_processing with {args.workers} workers; load average "
              f"before: {load_before:.1f}")
        reference = args.num_scenes / results[modes[0]][1]
        for face, (stats, seconds) in results.items():
            rate = args.num_scenes / seconds
            written = sum(s["count"] for s in stats["splits"].values())
            counts = stats.get("faces") or {}
            print(f"--face={face:6s} {rate:7.1f} img/s  ({seconds:6.1f} s; {written} records, "
                  f"no face {counts.get('no_face', '-')}, multi-face kept "
                  f"{counts.get('multi_face_kept', '-')}); ratio to --face={modes[0]}: "
                  f"{rate / reference:.2f}x")
        if small:
            base = (args.num_scenes - args.small) / (results[modes[0]][1] - small[modes[0]])
            for face, seconds in small.items():
                rate = (args.num_scenes - args.small) / (results[face][1] - seconds)
                print(f"--face={face:6s} marginal {rate:7.1f} img/s (the {args.small}-scene "
                      f"job took {seconds:5.1f} s); ratio: {rate / base:.2f}x")


if __name__ == "__main__":
    main()
