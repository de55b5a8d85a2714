"""Peak memory of the loaded SavedModel serving one file: hostile files beside a normal face.

    python -m bench.serving_memory [--backbone mobilenet_v3_small] [--image_size 96]

Exports a random model once; for each input a fresh process loads it, sends the file through
``serving_default`` and reports its peak RSS (VmHWM: ru_maxrss would carry the launcher's peak
across fork and exec). Inputs: a normal 200x200 face (the baseline), a 12 MP JPEG, the largest
PNG the serving limit accepts and deploy.serving_runtime_check's hostile PNGs. Goal: every input
at or below 1.5x the baseline's peak.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GOAL = 1.5


def child(model: str, path: str) -> None:
    import tensorflow as tf

    serve = tf.saved_model.load(model).signatures["serving_default"]
    with open(path, "rb") as f:
        data = f.read()
    try:
        age = float(serve(image_bytes=tf.constant([data]))["age"].numpy()[0])
        outcome = f"served, age {age:.1f}"
    except tf.errors.InvalidArgumentError as e:
        outcome = "refused: " + re.findall(r"image_bytes: [^\]']*", e.message)[0]
    print(json.dumps({"peak_mb": peak_mb(), "outcome": outcome}))


def peak_mb() -> float:
    """This process's own peak resident set (Linux /proc), in MB."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb / 1024


def inputs(directory: str, max_pixels: int) -> dict:
    import numpy as np
    from PIL import Image

    from deploy.serving_runtime_check import HOSTILE, flat_png
    from preprocessing import fake_records

    rng = np.random.default_rng(0)
    files = {}

    def write(name, data):
        files[name] = os.path.join(directory, name)
        with open(files[name], "wb") as f:
            f.write(data)

    buf = io.BytesIO()
    Image.fromarray(fake_records.drawn_face(35.0, 200, rng)).save(buf, "JPEG", quality=90)
    write("normal_face_200x200.jpg", buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(fake_records.drawn_face(35.0, 3000, rng)).resize((4000, 3000)).save(
        buf, "JPEG", quality=85)
    write("photo_4000x3000.jpg", buf.getvalue())
    side = math.isqrt(max_pixels)
    write(f"largest_accepted_{side}x{side}_rgb.png", flat_png(side, side, grey=False))
    for name, (width, height) in HOSTILE.items():
        write(f"hostile_{name}.png", flat_png(width, height))
    return files


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mobilenet_v3_small")
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--child", nargs=2, metavar=("MODEL", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(*args.child)

    from contract.framing import Framing
    from trainer import export
    from trainer import model as model_lib

    directory = tempfile.mkdtemp(prefix="serving_memory_")
    model = model_lib.build_model(backbone=args.backbone, image_size=args.image_size,
                                  head="regression", max_age=100)
    served = Framing(args.image_size).served()
    path = export.export_saved_model(model, directory + "/sm", served, "regression", 100)
    max_pixels, max_aspect = served.max_pixels, served.max_aspect_ratio
    print(f"{args.backbone} at {args.image_size}px, serving limits max_pixels {max_pixels}, "
          f"max_aspect_ratio {max_aspect:g}; peak RSS of a fresh process per file")
    rows, baseline = [], None
    for name, file in inputs(directory, max_pixels).items():
        out = subprocess.run([sys.executable, "-m", "bench.serving_memory", "--child", path,
                              file], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        baseline = baseline or result["peak_mb"]
        rows.append((name, os.path.getsize(file), result["peak_mb"], result["outcome"]))
    for name, size, peak, outcome in rows:
        ratio = peak / baseline
        print(f"{name:40s} {size:>9,d} B  {peak:7.0f} MB  {ratio:5.2f}x "
              f"{'ok ' if ratio <= GOAL else 'OVER'} {outcome}")


if __name__ == "__main__":
    main()
