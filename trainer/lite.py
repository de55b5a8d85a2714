"""Running a TFLite model written by trainer.export_lite, and the JSON that describes it.

``FILE.tflite`` has one signature, ``serving_default``:
  images float32 [N, S, S, 3], RGB 0..255, faces framed as the training records were
  (the ``resize``/``margin`` below, already at the model's side S: the app frames the face)
  -> age float32 [N] (clamped to [0, max_age]) and, for dex models, age_std float32 [N].
Whatever the quantization, input and outputs stay float32 (int8 models quantize inside).
``FILE.json`` beside it (``info_path``) holds S, the framing, the head and the quantization, so
the app and trainer.evaluate need nothing else. ``load_predict_fn`` gives trainer.evaluate the
same batch callable as a SavedModel's predict_images (trainer.predict.predict_fn_of).
"""

from __future__ import annotations

import os

import numpy as np

from contract import files
from contract.framing import Framing

SUFFIX = ".tflite"
SIGNATURE = "serving_default"
INPUT = "images"


def is_lite(path: str) -> bool:
    return path.endswith(SUFFIX)


def info_path(path: str) -> str:
    """FILE.tflite -> FILE.json."""
    return path[: -len(SUFFIX)] + ".json" if is_lite(path) else path + ".json"


def read_info(path: str) -> dict:
    info = files.read_json(info_path(path))
    if info is None:
        raise FileNotFoundError(f"--model={path!r}: no {info_path(path)!r} beside it (written by "
                                "trainer.export_lite: the image size and framing)")
    return info


def interpreter(path_or_bytes, threads: int | None = None):
    """A tf.lite.Interpreter on a file path or the model's bytes."""
    import tensorflow as tf

    if isinstance(path_or_bytes, bytes):
        return tf.lite.Interpreter(model_content=path_or_bytes, num_threads=threads)
    if not files.exists(path_or_bytes):
        raise FileNotFoundError(f"--model={path_or_bytes!r}: no such TFLite file")
    with tf.io.gfile.GFile(path_or_bytes, "rb") as f:  # gs:// too
        return tf.lite.Interpreter(model_content=f.read(), num_threads=threads)


def load_predict_fn(path: str, threads: int | None = None):
    """images [B, S, S, 3] 0..255 -> {"age": [B](, "age_std": [B])} through the interpreter.

    The signature runner resizes the input to each batch's size, so any batch size works.
    """
    info = read_info(path)
    runner = interpreter(path, threads).get_signature_runner(SIGNATURE)
    size = int(info["image_size"])

    def predict(images) -> dict[str, np.ndarray]:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ValueError(f"{os.path.basename(path)} takes framed faces [N, {size}, {size}, "
                             f"3], got {list(images.shape)}")
        out = runner(**{INPUT: images})
        return {k: np.asarray(out[k], np.float32).reshape(-1) for k in ("age", "age_std")
                if k in out}

    predict.framing = Framing.from_dict(info, f"{path}'s framing").served()
    predict.image_size = size
    return predict
