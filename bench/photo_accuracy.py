r"""Age MAE of the whole-photo path against the crop path on the same faces, side by side.

    python -m bench.photo_accuracy --model=MODEL_DIR --records=DATA_DIR \
        --faces_dir=../shared/data/utkface/images [--num_faces=300]

Faces come from the validation split of --records (never test), read as the original crops. Each
is fed directly (crop path) and pasted into a composed scene, upright and rotated, then cut out by
the predict_photo signature's ops: ``detect``, ``align``, and ``truth`` (the true placement, which
separates what compositing costs from what detection costs). Scenes are never written. When the
records were made with ``--face=detect|align`` (their stats.json says so), the crop path and the
``truth`` cut are framed as the records were: the face found in them, cut by that mode; a face not
found there is left out, as preprocessing left it out.
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
from absl import app, flags
from PIL import Image

MODEL = flags.DEFINE_string("model", None, "Trainer MODEL_DIR or SavedModel.", required=True)
RECORDS = flags.DEFINE_string("records", None, "The preprocessing output the model was trained "
                              "and validated on.", required=True)
FACES_DIR = flags.DEFINE_string("faces_dir", "../shared/data/utkface/images",
                                "The original aligned crops the records were made from.")
NUM_FACES = flags.DEFINE_integer("num_faces", 300, "Validation faces to use.")
SEED = flags.DEFINE_integer("seed", 0, "Which faces, and the scenes' draws.")
OUTPUT = flags.DEFINE_string("output", None, "Also write the figures here as JSON.")
# rectangle by default: a tight crop blended in through an ellipse loses its hair, chin and
# corners, which moves a model's estimate by years before any detector is involved.
PASTE = flags.DEFINE_enum("paste", "rectangle", ["rectangle", "ellipse"], "How each crop goes "
                          "into its scene: the whole crop as a rectangle, or through a feathered "
                          "ellipse (loses the hair and chin of a tight crop: a harder case).")
MODES = ("detect", "align")
PATHS = ("truth", *MODES)  # truth: the scene cut at the face's true placement (truth_crop)
CONDITIONS = (("upright", 0.0), ("rotated", 30.0))
ANGLE_BINS = ((0, 10), (10, 20), (20, 30.01))
# The face box's width in the scene (scenes.FACE_WIDTH): small faces are upsampled back to the
# model's size, so what compositing costs may be resolution, not surroundings.
WIDTH_BINS = ((40, 80), (80, 150), (150, 300.01))


def validation_faces(records: str, limit: int, seed: int) -> list[tuple[str, float]]:
    """(file name, age) of ``limit`` validation records, chosen by ``seed``."""
    import tensorflow as tf

    from contract import schema

    files = sorted(tf.io.gfile.glob(os.path.join(records, "validation-*-of-*")))
    if not files:
        raise FileNotFoundError(f"--records={records}: no validation-*-of-* shards")
    spec = {schema.FILENAME: tf.io.FixedLenFeature([], tf.string),
            schema.AGE: tf.io.FixedLenFeature([], tf.float32)}
    out = [(r[schema.FILENAME].decode(), float(r[schema.AGE])) for r in
           tf.data.TFRecordDataset(files).map(lambda x: tf.io.parse_single_example(x, spec))
           .as_numpy_iterator()]
    pick = np.random.default_rng(seed).permutation(len(out))[:limit]
    return [out[i] for i in sorted(pick)]


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def whole_photo_crops(source, index: int, seed: int, max_angle: float, served, detector,
                      records_face: str | None):
    """The face of ``source`` in its scene -> ({mode: framed crop} or None if not found, its
    true placement)."""
    import tensorflow as tf

    from imaging import faces
    from preprocessing import scenes
    from trainer import framing, photo_signature

    s = scenes.compose([source], np.random.default_rng([seed, index]), 1, max_angle,
                       PASTE.value)
    [truth] = s.faces
    data = _jpeg(s.image)
    image = framing.decode(data, served.image_size, full_size=True)
    found = faces.from_outputs(detector.detect_image(image))
    best = max(found, key=lambda f: faces.iou(f.box, truth.box), default=None)
    if best is None or faces.iou(best.box, truth.box) < 0.5:
        return None, truth
    box, marks = tf.constant(best.box, tf.float32), tf.constant(best.landmarks, tf.float32)
    out = {mode: photo_signature.face_crop(image, box, marks, mode, served.image_size,
                                                 served.resize, served.margin).numpy()
           for mode in MODES}
    out["truth"] = truth_crop(image.numpy(), truth, source, served, records_face, detector)
    return (None if out["truth"] is None else out), truth


def truth_crop(scene_image: np.ndarray, truth, source, served, records_face, detector):
    """The source crop's square cut back out of the scene at its true placement (the similarity
    that took its eyes to the placed eyes), framed as the crop path frames the crop file: what
    the scene holds of the face, with no scene detection error. Against the crop path it
    measures the compositing alone. None if records_face is set and no face is found in it."""
    import tensorflow as tf

    from trainer import framing, photos

    side = source.image.shape[0]
    (a, b), (c, d) = (complex(*p) for p in source.eyes), (complex(*p) for p in truth.eyes)
    m = (d - c) / (b - a)  # crop pixel z -> scene m z + t, in PIL's continuous coordinates
    t = c - m * a
    coeffs = (m.real, -m.imag, t.real, m.imag, m.real, t.imag)
    cut = Image.fromarray(scene_image).transform((side, side), Image.AFFINE, coeffs,
                                                 resample=Image.BICUBIC)
    if records_face:
        return records_crop(tf.constant(np.asarray(cut)), served, records_face, detector)
    return framing.decode_and_frame(photos.png_bytes(np.asarray(cut)), served).numpy()


def records_crop(image, served, records_face: str, detector):
    """The largest face found in a uint8 [H, W, 3] tensor, cut by ``records_face`` and framed
    as the model serves: float32 [S, S, 3], or None without a face."""
    import tensorflow as tf

    from imaging import faces
    from trainer import photo_signature

    face = faces.choose(faces.from_outputs(detector.detect_image(image)), "largest")
    if face is None:
        return None
    return photo_signature.face_crop(
        image, tf.constant(face.box, tf.float32), tf.constant(face.landmarks, tf.float32),
        records_face, served.image_size, served.resize, served.margin).numpy()


def crop_path_images(paths, served, records_face: str | None, detector):
    """The crop path: (framed [N, S, S, 3], found [N]) for the crop files, framed as the model's
    records were (the file itself, or the face found in it cut by ``records_face``)."""
    from trainer import framing, predict

    if records_face is None:
        images, ok, errors = predict.read_images(paths, served)
        if errors:
            raise ValueError(f"{len(errors)} crops unreadable, first: "
                             f"{next(iter(errors.items()))}")
        return images, np.ones(len(paths), bool)
    crops = []
    for path in paths:
        with open(path, "rb") as f:
            image = framing.decode(f.read(), served.image_size, full_size=True)
        crops.append(records_crop(image, served, records_face, detector))
    blank = np.zeros((served.image_size,) * 2 + (3,), np.float32)
    return (np.stack([blank if c is None else c for c in crops]),
            np.array([c is not None for c in crops]))


def mae(pred, true) -> float:
    return float(np.mean(np.abs(np.asarray(pred) - np.asarray(true)))) if len(pred) else np.nan


def main(argv) -> int:
    del argv
    from contract import stats as stats_file
    from imaging import faces
    from preprocessing import scenes
    from trainer import predict
    from trainer.framing import read_framing

    start = time.perf_counter()
    loaded = predict.load(MODEL.value)
    size = int(loaded.image_size.numpy())
    served = read_framing(loaded)
    chosen = validation_faces(RECORDS.value, NUM_FACES.value, SEED.value)
    paths = [os.path.join(FACES_DIR.value, name) for name, _ in chosen]
    ages = np.array([age for _, age in chosen])
    records_faces = stats_file.read(RECORDS.value).faces
    records_face = records_faces.mode if records_faces else None
    detector = faces.detector()
    images, crop_found = crop_path_images(paths, served, records_face, detector)
    crop_pred = predict.predict_ages(loaded, images)
    framed = {(c, m): [] for c, _ in CONDITIONS for m in PATHS}
    found = {c: [] for c, _ in CONDITIONS}
    angles, widths = [], []
    for i, ((_, age), path) in enumerate(zip(chosen, paths, strict=True)):
        source = scenes.aligned_crop_source(path, age)
        for condition, max_angle in CONDITIONS:
            crops, placed = whole_photo_crops(source, i, SEED.value, max_angle, served,
                                              detector, records_face)
            found[condition].append(crops is not None)
            for mode in PATHS:
                framed[condition, mode].append(crops[mode] if crops else
                                               np.zeros((size, size, 3), np.float32))
        angles.append(placed.angle)  # the rotated scene's; both place the face alike
        widths.append(placed.box[2] - placed.box[0])
    pred = {key: predict.predict_ages(loaded, np.stack(v)) for key, v in framed.items()}
    angles = np.abs(np.array(angles))
    both = np.array(found["upright"]) & np.array(found["rotated"]) & crop_found
    result = {"model": MODEL.value, "faces": len(chosen), "crop_path": records_face or "file",
              "found": {"crop": int(crop_found.sum()),
                        **{c: int(np.sum(v)) for c, v in found.items()}},
              "common": int(both.sum()),
        "mae": {"crop": mae(crop_pred[both], ages[both])}, "per_face_vs_crop": {},
        "seconds": 0.0}
    for key, p in pred.items():
        result["mae"]["/".join(key)] = mae(p[both], ages[both])
        result["per_face_vs_crop"]["/".join(key)] = mae(p[both], crop_pred[both])
    result["mae_by_angle"] = {
        f"{mode}/{lo}-{int(hi)}": mae(pred["rotated", mode][both & (angles >= lo) & (angles < hi)],
                                      ages[both & (angles >= lo) & (angles < hi)])
        for mode in MODES for lo, hi in ANGLE_BINS}
    widths = np.array(widths)
    by_width = {"crop": crop_pred, "upright/truth": pred["upright", "truth"],
                "upright/align": pred["upright", "align"]}
    result["mae_by_face_width"] = {
        f"{key}/{lo}-{int(hi)}px": mae(p[both & (widths >= lo) & (widths < hi)],
                                       ages[both & (widths >= lo) & (widths < hi)])
        for key, p in by_width.items() for lo, hi in WIDTH_BINS}
    result["faces_by_face_width"] = {f"{lo}-{int(hi)}px": int(np.sum(
        both & (widths >= lo) & (widths < hi))) for lo, hi in WIDTH_BINS}
    m = result["mae"]
    result["goals"] = {
        "whole_photo_minus_crop (align, upright; goal <= 0.3)": m["upright/align"] - m["crop"],
        "of which compositing (truth cut minus crop)": m["upright/truth"] - m["crop"],
        "of which detection+alignment (align minus truth cut)":
            m["upright/align"] - m["upright/truth"],
        "rotated_minus_upright, align (goal <= 0.5)": m["rotated/align"] - m["upright/align"],
        "rotated_minus_upright, detect": m["rotated/detect"] - m["upright/detect"]}
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(f"{len(chosen)} validation faces of {MODEL.value}; crop path: "
          f"{result['crop_path']} (found {result['found']['crop']}); found upright "
          f"{result['found']['upright']}, rotated {result['found']['rotated']}; MAE on the "
          f"{result['common']} found in all (load average {os.getloadavg()[0]:.1f})")
    print("| path | MAE | minus crop MAE | mean abs(age - crop path's age) |\n|---|---|---|---|")
    for key, value in m.items():
        diff = result["per_face_vs_crop"].get(key, 0.0)
        print(f"| {key} | {value:.2f} | {value - m['crop']:+.2f} | {diff:.2f} |")
    print("| rotated, by abs(angle) | " + " | ".join(
        f"{k}: {v:.2f}" for k, v in result["mae_by_angle"].items()) + " |")
    print("| by face width in the scene | " + " | ".join(
        f"{k}: {v:.2f}" for k, v in result["mae_by_face_width"].items()) + " |")
    print(f"faces per width: {result['faces_by_face_width']}")
    for name, value in result["goals"].items():
        print(f"{name}: {value:+.2f}")
    if OUTPUT.value:
        with open(OUTPUT.value, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    app.run(main)
