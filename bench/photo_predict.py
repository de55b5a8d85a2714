r"""Time of trainer.predict on whole photos: per photo with --face=detect|align against none.

    python -m bench.photo_predict [--num_photos=20] [--model=MODEL_DIR]

Photos are astronaut scenes (preprocessing.scenes, 1-3 faces, 512-1024 px wide); without
``--model`` the SavedModel is the 32 px fixed-weight test model, so the figure is the
detection, cropping and framing overhead rather than a backbone's. Timed after one warm-up
photo (the detector graph traces once per process).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

NUM_PHOTOS = flags.DEFINE_integer("num_photos", 20, "Scenes to time.")
MODEL = flags.DEFINE_string("model", None, "MODEL_DIR or SavedModel; default a tiny one.")


def _tiny_model(directory: str) -> str:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from fixed_models import mean_colour_model

    from contract.framing import Framing
    from trainer import export

    return export.export_saved_model(mean_colour_model(32), os.path.join(directory, "sm"),
                                     Framing(32), "regression", max_age=120)


def main(argv) -> int:
    from preprocessing import scenes
    from trainer import predict
    from trainer.framing import read_framing

    with tempfile.TemporaryDirectory() as tmp:
        loaded = predict.load(MODEL.value or _tiny_model(tmp))
        paths, faces_total = [], 0
        for i in range(NUM_PHOTOS.value + 1):
            s = scenes.compose([scenes.astronaut()], np.random.default_rng([11, i]),
                               1 + i % 3)
            faces_total += len(s.faces) if i else 0
            paths.append(os.path.join(tmp, f"scene{i}.jpg"))
            Image.fromarray(s.image).save(paths[-1], quality=92)
        print(f"{NUM_PHOTOS.value} photos, {faces_total} faces, load average "
              f"{os.getloadavg()[0]:.1f}")
        for mode in ("none", "detect", "align"):
            run = ((lambda p: predict.predict_ages(loaded, predict.read_images(
                p, read_framing(loaded))[0])) if mode == "none" else
                   (lambda p, m=mode: predict.predict_photos(loaded, p, m)))
            run(paths[:1])  # warm-up: traces the detector and the signature
            start, cpu = time.perf_counter(), time.process_time()
            out = run(paths[1:])
            wall = (time.perf_counter() - start) / NUM_PHOTOS.value * 1e3
            cpu = (time.process_time() - cpu) / NUM_PHOTOS.value * 1e3
            found = "" if mode == "none" else f", {len(out[0])} faces predicted"
            print(f"--face={mode}: {wall:.0f} ms/photo ({cpu:.0f} CPU-ms){found}")
    return 0


if __name__ == "__main__":
    app.run(main)
