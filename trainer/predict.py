"""Predict ages with an exported SavedModel: prints CSV ``file,age``, one row per image.

    python -m trainer.predict --model=MODEL_DIR [--tta_flip] [--predict_batch_size=32] IMAGES...
    python -m trainer.predict --model=DIR --face=detect|align [--json] [--annotate=OUT] PHOTOS...

With ``--face`` each photo is searched for faces (trainer.photos) and every face gets a row
``file,face,x0,y0,x1,y1,score,age``, largest first; a photo without one is reported on stderr.

``--model`` is a trainer MODEL_DIR (its ``saved_model/`` is used) or a SavedModel directory
itself (locate_model, which trainer.evaluate uses too).
Each image is framed as the serving signature frames it, i.e. as preprocessing framed the
training records (trainer.framing, with the ``resize`` mode and ``margin`` stored in the
SavedModel; a SavedModel exported before they were stored gets a centre crop with no margin, as
before), then goes through the model's ``predict_images`` signature. A photo with an EXIF
orientation is first turned upright as preprocessing turned it (trainer.orientation: TF's
decoders, and so ``serving_default``, ignore EXIF). ``--tta_flip``
averages the prediction of the image and its mirror image. A file that cannot be predicted
(unreadable, or over contract.limits: read size, declared pixels or aspect ratio, checked before
decoding) is reported on stderr in one line and skipped; the exit status is non-zero only when
no image could be predicted. File names are written as spreadsheet-safe CSV cells.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
from absl import app, flags

from contract import limits
from contract.framing import Framing

SAVED_MODEL_SUBDIR = "saved_model"
PREDICT_SIGNATURE = "predict_images"
PER_FACE = ("age", "age_std")  # the outputs a client shows per face (age_std: dex models only)


@dataclass(frozen=True)
class ModelLocation:
    saved_model: str  # directory holding saved_model.pb
    model_dir: str | None  # the trainer's MODEL_DIR when known (config.json, history.csv)


def locate_model(path: str) -> ModelLocation:
    """MODEL_DIR or SavedModel dir -> both paths; a clear error when it is neither."""
    from contract import files

    path = path.rstrip("/")
    if files.exists(f"{path}/{SAVED_MODEL_SUBDIR}/saved_model.pb"):
        return ModelLocation(f"{path}/{SAVED_MODEL_SUBDIR}", path)
    if files.exists(f"{path}/saved_model.pb"):
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        known = any(files.exists(f"{parent}/{f}") for f in ("config.json", "history.csv"))
        return ModelLocation(path, parent if known else None)
    raise FileNotFoundError(
        f"--model={path!r}: neither a SavedModel (no saved_model.pb) nor a trainer MODEL_DIR "
        f"(no {SAVED_MODEL_SUBDIR}/saved_model.pb). Point it at the trainer's --model_dir.")


def load(path: str):
    """A trainer MODEL_DIR or a SavedModel directory -> the loaded SavedModel."""
    import tensorflow as tf

    return tf.saved_model.load(locate_model(path).saved_model)


def predict_fn_of(loaded, where: str = "the SavedModel"):
    """The loaded SavedModel's predict_images signature as images [B,H,W,3] 0..255 ->
    {"age": [B]} plus {"age_std": [B]} for dex models (PER_FACE outputs)."""
    import tensorflow as tf

    from trainer.framing import read_framing

    if PREDICT_SIGNATURE not in loaded.signatures:
        raise ValueError(f"{where} has no {PREDICT_SIGNATURE!r} signature (has "
                         f"{sorted(loaded.signatures)}): was it exported by trainer.export?")
    signature = loaded.signatures[PREDICT_SIGNATURE]
    input_name = next(iter(signature.structured_input_signature[1]))

    def predict(images) -> dict[str, np.ndarray]:
        out = signature(**{input_name: tf.convert_to_tensor(images, tf.float32)})
        return {k: out[k].numpy().reshape(-1) for k in PER_FACE if k in out}

    predict.keep_alive = loaded  # the signature needs its object graph alive
    predict.framing = read_framing(loaded)
    return predict


def load_predict_fn(saved_model: str):
    import tensorflow as tf

    return predict_fn_of(tf.saved_model.load(saved_model), saved_model)


def predict_batch(predict_fn, images, tta_flip: bool = False) -> dict[str, np.ndarray]:
    """{"age": [B](, "age_std": [B])} for a batch; with tta_flip the mean of the image's and
    its mirror's prediction.

    For a dex head that equals the expectation of the averaged distributions (it is linear), and
    the std is that averaged distribution's: a mixture's variance is the mean of E[k^2] minus the
    square of the mean.
    """
    import tensorflow as tf

    pred = predict_fn(images)
    if not tta_flip:
        return pred
    flip = predict_fn(tf.image.flip_left_right(images))
    out = {"age": (pred["age"] + flip["age"]) / 2.0}
    if "age_std" in pred:
        second = (pred["age_std"] ** 2 + pred["age"] ** 2 + flip["age_std"] ** 2
                  + flip["age"] ** 2) / 2.0
        out["age_std"] = np.sqrt(np.maximum(second - out["age"] ** 2, 0.0))
    return out


def read_bounded(path: str, max_bytes: int = limits.MAX_READ_BYTES) -> bytes:
    """A whole image file, refused (ValueError) when larger than max_bytes or, locally, when not
    a regular file (a FIFO would hang the read, a device never end)."""
    import tensorflow as tf

    if "://" not in path and os.path.exists(path) and not os.path.isfile(path):
        raise ValueError("not a regular file")
    too_large = ValueError(f"larger than the {max_bytes}-byte read limit (contract.limits."
                           "MAX_READ_BYTES)")
    if tf.io.gfile.stat(path).length > max_bytes:  # refused unread...
        raise too_large
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read(max_bytes + 1)  # ...and bounded if it grew since
    if len(data) > max_bytes:
        raise too_large
    return data


def read_images(paths, framing: Framing):
    """(framed float32 [N, S, S, 3], readable paths, {path: one-line reason}) for files.

    Memory stays bounded whatever a file holds: a bounded read, then the header's declared size
    against contract.limits before anything is decoded (orientation.model_bytes).
    """
    import tensorflow as tf

    from trainer.framing import decode_and_frame
    from trainer.orientation import model_bytes

    images, ok, errors = [], [], {}
    draft, size = framing.draft_size(), framing.image_size
    for path in paths:
        data = _read(path, errors)
        if data is None:
            continue
        try:
            # Upright first (TF ignores EXIF; preprocessing applied it), then the very
            # framing serving_default traces: sideways phone photos predict as they trained.
            images.append(decode_and_frame(model_bytes(data, draft), framing).numpy())
            ok.append(path)
        except tf.errors.OpError:  # the header was fine: the pixel data is not
            errors[path] = "the image data could not be decoded (truncated or corrupt file)"
        except (OSError, ValueError) as e:
            errors[path] = _one_line(e)
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.float32)
    return stacked, ok, errors


def _read(path: str, errors: dict) -> bytes | None:
    """The file's bytes (read_bounded), or None with the one-line reason in errors[path]."""
    import tensorflow as tf

    try:
        return read_bounded(path)
    except tf.errors.NotFoundError:
        errors[path] = "no such file"
    except (tf.errors.OpError, OSError, ValueError) as e:
        errors[path] = f"the file cannot be read: {_one_line(e)}"
    return None


def _one_line(error: Exception) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def predict_outputs(loaded, images: np.ndarray, tta_flip: bool = False,
                    batch_size: int = 32) -> dict[str, np.ndarray]:
    """{"age": [N](, "age_std": [N])} for framed images (read_images, decoded records), via
    predict_images."""
    predict_fn = predict_fn_of(loaded)
    out = [predict_batch(predict_fn, images[start:start + batch_size], tta_flip)
           for start in range(0, len(images), batch_size)]
    if not out:
        return {"age": np.zeros((0,), np.float32)}
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def predict_ages(loaded, images: np.ndarray, tta_flip: bool = False,
                 batch_size: int = 32) -> np.ndarray:
    """Ages [N] for framed images (predict_outputs' "age")."""
    return predict_outputs(loaded, images, tta_flip, batch_size)["age"]


def predict_photos(loaded, paths, mode: str, tta_flip: bool = False, batch_size: int = 32,
                   annotate_dir: str | None = None, detector=None):
    """Whole photos -> (rows, {path: one-line reason}, [paths without a face]).

    Each face the detector finds (largest first; trainer.photos) is cropped, framed as
    serving_default frames a photo, and predicted; rows are trainer.photos.face_row dicts in
    input order. With annotate_dir each photo with a face is written there with boxes and ages.
    """
    from trainer import photos
    from trainer.framing import decode_and_frame, read_framing

    photos.check_mode(mode)
    served = read_framing(loaded)
    rows, errors, no_face, written = [], {}, [], set()
    for path in paths:
        data = _read(path, errors)
        if data is None:
            continue
        try:
            rgb = photos.upright_rgb(data)
        except (OSError, ValueError) as e:
            errors[path] = _one_line(e)
            continue
        crops = photos.face_crops(rgb, mode, detector)
        if not crops:
            no_face.append(path)
            continue
        # One photo at a time: memory holds one photo and its faces, however many photos.
        framed = np.stack([decode_and_frame(photos.png_bytes(crop), served).numpy()
                           for _, crop in crops])
        out = predict_outputs(loaded, framed, tta_flip, batch_size)
        ages, stds = out["age"], out.get("age_std", [None] * len(crops))
        found = [face for face, _ in crops]
        rows.extend(photos.face_row(path, i, face, age, std)
                    for i, (face, age, std) in enumerate(zip(found, ages, stds, strict=True)))
        if annotate_dir:
            photos.annotate(rgb, found, ages, _annotated_path(annotate_dir, path, written))
    return rows, errors, no_face


def _annotated_path(directory: str, path: str, written: set) -> str:
    """DIR/<name>.png, numbered when two inputs share a name."""
    os.makedirs(directory, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0] or "photo"
    name, n = f"{stem}.png", 1
    while name in written:
        name, n = f"{stem}_{n}.png", n + 1
    written.add(name)
    return os.path.join(directory, name)


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
    from trainer import photos

    if f.face == "none":
        if f.annotate:
            raise app.UsageError("--annotate needs --face=detect or --face=align")
        from trainer.framing import read_framing

        images, ok, errors = read_images(paths, read_framing(loaded))
        out = predict_outputs(loaded, images, f.tta_flip, f.predict_batch_size)
        stds = out.get("age_std", [None] * len(ok))
        rows = [photos.image_row(p, a, s) for p, a, s in zip(ok, out["age"], stds, strict=True)]
        no_face = []
    else:
        rows, errors, no_face = predict_photos(loaded, paths, f.face, f.tta_flip,
                                               f.predict_batch_size, f.annotate)
    for path, error in errors.items():
        print(f"cannot read {path}: {error}", file=sys.stderr)
    for path in no_face:
        print(f"no face found in {path}", file=sys.stderr)
    photos.write_rows(rows, f.json)
    if not rows:
        what = "could be read" if f.face == "none" else "gave a face"
        print(f"none of the {len(paths)} image(s) {what}", file=sys.stderr)
        return 1
    return 0


def _define_flags():
    # Declared only when run as a program: deploy.serve has its own --model, and a module
    # that declares flags at import time could not be imported next to it.
    flags.DEFINE_string("model", None, "Trainer MODEL_DIR or SavedModel directory (local or "
                        "gs://).")
    flags.DEFINE_bool("tta_flip", False, "Average with the horizontally flipped image.")
    flags.DEFINE_integer("predict_batch_size", 32, "Images per model call.")
    flags.DEFINE_enum("face", "none", ["none", "detect", "align"],  # trainer.photos.FACE_MODES
                      "none: each image is one face crop. detect: every face the detector finds "
                      "is cropped at its box; align: rotated eyes-level onto the aligned-crop "
                      "template. One line per face.")
    flags.DEFINE_bool("json", False, "JSON lines instead of CSV.")
    flags.DEFINE_string("annotate", None, "With --face: write each photo with its boxes and "
                        "ages drawn into this directory (PNG).")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
