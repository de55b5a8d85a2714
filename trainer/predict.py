"""Predict ages with an exported SavedModel: prints CSV ``file,age``, one row per image.

    python -m trainer.predict --model=MODEL_DIR [--tta_flip] [--predict_batch_size=32] IMAGES...

``--model`` is a trainer MODEL_DIR (its ``saved_model/`` is used) or a SavedModel directory
itself, found the same way as trainer.evaluate finds it.
Each image is framed as the serving signature frames it, i.e. as preprocessing framed the
training records (trainer.framing, with the ``resize`` mode and ``margin`` stored in the
SavedModel; a SavedModel exported before they were stored gets a centre crop with no margin, as
before), then goes through the model's ``predict_images`` signature. A photo with an EXIF
orientation is first turned upright as preprocessing turned it (trainer.orientation: TF's
decoders, and so ``serving_default``, ignore EXIF). ``--tta_flip``
averages the prediction of the image and its mirror image. Unreadable images are reported on
stderr and skipped; the exit status is non-zero only when no image could be predicted.
"""

from __future__ import annotations

import csv
import sys

import numpy as np
from absl import app, flags


def load(path: str):
    """A trainer MODEL_DIR or a SavedModel directory -> the loaded SavedModel."""
    import tensorflow as tf

    from trainer.evaluate import locate_model

    return tf.saved_model.load(locate_model(path).saved_model)


def read_images(paths, image_size: int, resize: str = "crop", margin: float = 0.0):
    """(framed float32 [N, S, S, 3], readable paths, {path: error}) for a list of files."""
    import tensorflow as tf

    from trainer.framing import decode_and_frame, draft_size
    from trainer.orientation import oriented_bytes

    images, ok, errors = [], [], {}
    draft = draft_size(image_size, margin)
    for path in paths:
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                # Upright first (TF ignores EXIF; preprocessing applied it), then the very
                # framing serving_default traces: sideways phone photos predict as they trained.
                data = oriented_bytes(f.read(), draft)
            images.append(decode_and_frame(data, image_size, resize, margin).numpy())
            ok.append(path)
        except (tf.errors.OpError, OSError, ValueError) as e:
            errors[path] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    stacked = np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.float32)
    return stacked, ok, errors


def predict_ages(loaded, images: np.ndarray, tta_flip: bool = False,
                 batch_size: int = 32) -> np.ndarray:
    """Ages [N] for framed images (read_images, decoded records), via predict_images."""
    import tensorflow as tf

    fn = loaded.signatures["predict_images"]
    out = []
    for start in range(0, len(images), batch_size):
        batch = tf.constant(images[start:start + batch_size], tf.float32)
        age = fn(images=batch)["age"].numpy()
        if tta_flip:
            age = 0.5 * (age + fn(images=tf.reverse(batch, axis=[2]))["age"].numpy())
        out.append(age)
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def main(argv):
    f = flags.FLAGS
    paths = argv[1:]
    if not f.model:
        raise app.UsageError("--model is required")
    if not paths:
        raise app.UsageError("give at least one image path")
    try:
        loaded = load(f.model)
    except FileNotFoundError as e:
        raise app.UsageError(str(e)) from None
    from trainer.framing import read_framing

    resize, margin = read_framing(loaded)
    images, ok, errors = read_images(paths, int(loaded.image_size.numpy()), resize, margin)
    for path, error in errors.items():
        print(f"cannot read {path}: {error}", file=sys.stderr)
    ages = predict_ages(loaded, images, f.tta_flip, f.predict_batch_size)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["file", "age"])
    for path, age in zip(ok, ages, strict=True):
        writer.writerow([path, f"{float(age):.2f}"])
    if not ok:
        print(f"none of the {len(paths)} image(s) could be read", file=sys.stderr)
        return 1
    return 0


def _define_flags():
    # Declared only when run as a program: deploy.serve has its own --model, and a module
    # that declares flags at import time could not be imported next to it.
    flags.DEFINE_string("model", None, "Trainer MODEL_DIR or SavedModel directory (local or "
                        "gs://).")
    flags.DEFINE_bool("tta_flip", False, "Average with the horizontally flipped image.")
    flags.DEFINE_integer("predict_batch_size", 32, "Images per model call.")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
