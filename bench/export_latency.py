"""Exported SavedModel latency on CPU: one image and a batch of 64, both signatures.

    python -m bench.export_latency [--backbone mobilenet_v3_small] [--image_size 96]

Exports a randomly initialised model with trainer.export.export_saved_model, loads it back and
times serving_default (JPEG bytes in) and predict_images (decoded 200x200 float images in):
median of --repeats calls after a warm-up call.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from contract.framing import Framing  # noqa: E402
from preprocessing import fake_records  # noqa: E402
from trainer import export  # noqa: E402
from trainer import model as model_lib  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (tracing, first allocation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mobilenet_v3_small")
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--head", default="regression", choices=["regression", "dex"])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    model = model_lib.build_model(backbone=args.backbone, image_size=args.image_size,
                                  head=args.head, max_age=100)
    path = export.export_saved_model(model, tempfile.mkdtemp() + "/sm",
                                     Framing(args.image_size), args.head, 100)
    loaded = tf.saved_model.load(path)
    rng = np.random.default_rng(0)
    faces = [Image.fromarray(fake_records.drawn_face(age, 200, rng))
             for age in rng.uniform(fake_records.MIN_AGE, fake_records.MAX_AGE, 64)]
    jpegs = []
    for face in faces:
        buf = io.BytesIO()
        face.save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    arrays = np.stack([np.asarray(f, np.float32) for f in faces])
    serve, images = loaded.signatures["serving_default"], loaded.signatures["predict_images"]
    print(f"{args.backbone} ({args.head}) at {args.image_size}px, 200x200 inputs, "
          f"{os.cpu_count()} CPU cores, median of {args.repeats}")
    for n in (1, 64):
        b = tf.constant(jpegs[:n])
        x = tf.constant(arrays[:n])
        ms_bytes = median_ms(lambda b=b: serve(image_bytes=b), args.repeats)
        ms_images = median_ms(lambda x=x: images(images=x), args.repeats)
        print(f"batch {n:3d}: serving_default (JPEG bytes) {ms_bytes:8.1f} ms "
              f"({ms_bytes / n:6.2f} ms/image); predict_images {ms_images:8.1f} ms")


if __name__ == "__main__":
    main()
