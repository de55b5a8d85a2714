r"""Real faces pasted into larger made-up scenes, with ground truth, for detector tests and benches.

    python -m preprocessing.scenes --output_dir=DIR --num_scenes=300 --seed=0 \
        [--faces_dir=DIR --labels=DIR/labels.csv]   # default faces: the public-domain astronaut

Each scene is a textured background holding 0-3 faces, scaled, rotated and blended in through a
feathered ellipse (no seams for a detector to latch onto); sizes are the constants below. Writes
DIR/scenes/scene_NNNNN.jpg and DIR/truth.jsonl (per face: box x1,y1,x2,y2, eyes, angle, age,
source). Scene i depends only on (seed, i). Ground truth comes from the sources: ``astronaut()``
is hand-checked, ``aligned_crop_source`` follows UTKFace-style aligned crops (ALIGNED_CROP_*).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw, ImageFilter

SCENE_WIDTH = (512, 1024)
SCENE_HEIGHT = (384, 768)
FACE_WIDTH = (40, 300)  # the face box's width in the scene, pixels
MAX_ANGLE = 30.0
MAX_FACES = 3
JPEG_QUALITY = 92
TRUTH_FILE = "truth.jsonl"
SCENES_DIR = "scenes"
_CONTEXT = 1.35  # how much of the source around the face box is pasted (feathered away)
_FEATHER = 0.08  # feather width, fraction of the pasted patch's short side

# UTKFace's "aligned & cropped" faces are 200x200 with the eyes at fixed places. Face box: the
# median box MTCNN draws on 98 of 100 upright crops (every 200th file); eyes: their median
# landmarks. A box convention is needed for IoU; this one is what a detector draws.
ALIGNED_CROP_SIZE = 200
ALIGNED_CROP_BOX = (16.0, 0.0, 179.0, 192.0)
ALIGNED_CROP_EYES = ((60.5, 58.0), (137.0, 58.0))


@dataclasses.dataclass(frozen=True)
class FaceSource:
    """A labelled photo and where its face is (pixels; eyes as seen: image-left first)."""

    image: np.ndarray  # uint8 [H, W, 3]
    box: tuple[float, float, float, float]
    eyes: tuple[tuple[float, float], tuple[float, float]]
    age: float | None
    name: str


@dataclasses.dataclass(frozen=True)
class PlacedFace:
    box: tuple[float, float, float, float]  # the source box, scaled, centred where it landed
    eyes: tuple[tuple[float, float], tuple[float, float]]
    angle: float  # degrees, counter-clockwise as seen
    age: float | None
    source: str

    def to_json(self) -> dict:
        return {"box": [round(v, 2) for v in self.box],
                "eyes": [[round(v, 2) for v in e] for e in self.eyes],
                "angle": round(self.angle, 3), "age": self.age, "source": self.source}


@dataclasses.dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 [H, W, 3]
    faces: tuple[PlacedFace, ...]


def astronaut() -> FaceSource:
    """Eileen Collins' NASA portrait from scikit-image (public domain); box and eyes checked by
    eye against the pixels. Her age in it is not known exactly, so None."""
    from skimage import data  # a test/dev dependency only

    return FaceSource(data.astronaut(), (182.0, 64.0, 265.0, 171.0),
                      ((204.0, 100.0), (245.0, 102.0)), None, "astronaut")


def aligned_crop_source(path: str, age: float | None) -> FaceSource:
    """An aligned 200x200 face crop (UTKFace style); other sizes are scaled to it."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    if abs(w / h - 1.0) > 0.05:
        raise ValueError(f"{path}: {w}x{h} is not a square aligned face crop")
    s = w / ALIGNED_CROP_SIZE
    box = tuple(v * s for v in ALIGNED_CROP_BOX)
    eyes = tuple((x * s, y * s) for x, y in ALIGNED_CROP_EYES)
    return FaceSource(rgb, box, eyes, age, os.path.basename(path))


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A made-up background: one base layer, then 0-2 overlays; float32 [H, W, 3] 0..255."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    colour = lambda: rng.uniform(0, 255, 3).astype(np.float32)

    def gradient():
        a = rng.uniform(0, 2 * np.pi)
        t = (xx * np.cos(a) + yy * np.sin(a))
        t = (t - t.min()) / max(1.0, float(t.max() - t.min()))
        return colour() * (1 - t[..., None]) + colour() * t[..., None]

    def smooth_noise():
        cells = rng.uniform(0, 255, (rng.integers(2, 12), rng.integers(2, 12), 3))
        im = Image.fromarray(cells.astype(np.uint8)).resize((width, height), Image.BICUBIC)
        return np.asarray(im, np.float32)

    def stripes():
        a, period = rng.uniform(0, np.pi), rng.uniform(6, 80)
        t = 0.5 + 0.5 * np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period)
        return colour() * (1 - t[..., None]) + colour() * t[..., None]

    def checker():
        n = rng.uniform(8, 90)
        t = ((xx // n + yy // n) % 2)[..., None]
        return colour() * (1 - t) + colour() * t

    image = [gradient, smooth_noise, stripes, checker][rng.integers(4)]()
    for _ in range(rng.integers(0, 3)):
        overlay = [gradient, smooth_noise, stripes, checker][rng.integers(4)]()
        alpha = rng.uniform(0.15, 0.5)
        image = image * (1 - alpha) + overlay * alpha
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas, "RGBA")
    for _ in range(rng.integers(0, 25)):  # shapes: edges and blobs a detector must not call faces
        x0, y0 = rng.uniform(-50, width), rng.uniform(-50, height)
        x1, y1 = x0 + rng.uniform(5, width / 2), y0 + rng.uniform(5, height / 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3)) + (int(rng.integers(80, 256)),)
        kind = rng.integers(4)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 2:
            draw.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(1, 12)))
        else:
            pts = [(x0 + rng.uniform(0, 200), y0 + rng.uniform(0, 200)) for _ in range(3)]
            draw.polygon(pts, fill=fill)
    image = np.asarray(canvas, np.float32)
    return image + rng.normal(0, rng.uniform(0, 8), image.shape).astype(np.float32)  # grain


PASTES = ("ellipse", "rectangle")


def face_patch(source: FaceSource, face_width: float, angle: float, paste: str = "ellipse"):
    """The source's face region scaled so its box is ``face_width`` wide, rotated by ``angle``
    (degrees, counter-clockwise as seen). ``paste``: ``ellipse`` blends it in through a feathered
    ellipse (no hard edge for a detector to find, but on a tight crop such as UTKFace's, whose
    face box is nearly the whole image, it also drops the top of the head and the corners);
    ``rectangle`` keeps the whole region, as a photo within the photo.
    -> (RGBA patch, map source -> patch coordinates)."""
    if paste not in PASTES:
        raise ValueError(f"paste={paste!r}: must be one of {', '.join(PASTES)}")
    x1, y1, x2, y2 = source.box
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * _CONTEXT / 2
    h, w = source.image.shape[:2]
    left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    right, bottom = min(w, math.ceil(cx + half)), min(h, math.ceil(cy + half))
    scale = face_width / (x2 - x1)
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    crop = Image.fromarray(source.image[top:bottom, left:right]).resize(size, Image.LANCZOS)
    if paste == "rectangle":
        crop.putalpha(255)
    else:
        feather = max(1.0, _FEATHER * min(size))
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).ellipse((feather, feather, size[0] - feather, size[1] - feather),
                                     255)
        crop.putalpha(mask.filter(ImageFilter.GaussianBlur(feather / 2)))
    rotated = crop.rotate(angle, resample=Image.BICUBIC, expand=True)
    # PIL rotates about the patch centre and re-centres it in the expanded patch. With y down,
    # counter-clockwise as seen is p' = [[c, s], [-s, c]] (p - centre) + new centre.
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    old_c = np.array([size[0] / 2, size[1] / 2])
    new_c = np.array([rotated.size[0] / 2, rotated.size[1] / 2])
    rot = np.array([[c, s], [-s, c]])

    def to_patch(x, y):
        p = (np.array([x - left, y - top]) * scale - old_c)
        return tuple(rot @ p + new_c)

    return rotated, to_patch, scale


def compose(sources, rng: np.random.Generator, num_faces: int | None = None,
            max_angle: float = MAX_ANGLE, paste: str = "ellipse") -> Scene:
    """One scene with ``num_faces`` (default: 0-3 at random) faces drawn from ``sources``.
    ``max_angle=0`` gives the same scene (same draws) with every face upright. ``paste``: how
    each face goes in (``face_patch``)."""
    width = int(rng.integers(SCENE_WIDTH[0], SCENE_WIDTH[1] + 1))
    height = int(rng.integers(SCENE_HEIGHT[0], SCENE_HEIGHT[1] + 1))
    canvas = Image.fromarray(np.clip(background(rng, width, height), 0, 255).astype(np.uint8))
    wanted = int(rng.integers(0, MAX_FACES + 1)) if num_faces is None else num_faces
    placed, taken = [], []
    for _ in range(wanted):
        source = sources[int(rng.integers(len(sources)))]
        bw, bh = source.box[2] - source.box[0], source.box[3] - source.box[1]
        # log-uniform width: as many small faces as large ones, capped so that it fits
        top_width = min(FACE_WIDTH[1], 0.55 * min(width, height) * bw / max(bw, bh))
        face_width = float(np.exp(rng.uniform(np.log(FACE_WIDTH[0]), np.log(top_width))))
        angle = float(rng.uniform(-1.0, 1.0)) * max_angle
        patch, to_patch, scale = face_patch(source, face_width, angle, paste)
        half_w, half_h = bw * scale / 2, bh * scale / 2
        for _try in range(40):  # a free spot where the whole box fits; else the face is skipped
            cx = rng.uniform(half_w + 2, width - half_w - 2)
            cy = rng.uniform(half_h + 2, height - half_h - 2)
            box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
            if not any(_overlap(box, other, pad=0.15 * face_width) for other in taken):
                break
        else:
            continue
        fx, fy = to_patch((source.box[0] + source.box[2]) / 2, (source.box[1] + source.box[3]) / 2)
        ox, oy = round(cx - fx), round(cy - fy)
        canvas.paste(patch, (ox, oy), patch)
        eyes = tuple((x + ox, y + oy) for x, y in (to_patch(*e) for e in source.eyes))
        shift = (ox + fx - cx, oy + fy - cy)  # the rounding of the paste offset
        box = (box[0] + shift[0], box[1] + shift[1], box[2] + shift[0], box[3] + shift[1])
        taken.append(box)
        placed.append(PlacedFace(tuple(float(v) for v in box),
                                 tuple((float(x), float(y)) for x, y in eyes),
                                 angle, source.age, source.name))
    return Scene(np.asarray(canvas), tuple(placed))


def _overlap(a, b, pad: float = 0.0) -> bool:
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1]
                or b[3] + pad <= a[1])


def scene(sources, seed: int, index: int, paste: str = "ellipse") -> Scene:
    """Scene ``index`` of the series ``seed``: the same pair always gives the same scene."""
    if not sources:
        raise ValueError("no face sources to compose scenes from")
    return compose(sources, np.random.default_rng([seed, index]), paste=paste)


def write(sources, output_dir: str, num_scenes: int, seed: int = 0,
          paste: str = "ellipse") -> str:
    """Writes the scenes and truth.jsonl into output_dir; returns the truth file's path."""
    os.makedirs(os.path.join(output_dir, SCENES_DIR), exist_ok=True)
    truth_path = os.path.join(output_dir, TRUTH_FILE)
    with open(truth_path, "w", encoding="utf-8") as truth:
        for i in range(num_scenes):
            s = scene(sources, seed, i, paste)
            name = f"scene_{i:05d}.jpg"
            Image.fromarray(s.image).save(os.path.join(output_dir, SCENES_DIR, name),
                                          quality=JPEG_QUALITY)
            truth.write(json.dumps({"file": f"{SCENES_DIR}/{name}", "width": s.image.shape[1],
                                    "height": s.image.shape[0],
                                    "faces": [f.to_json() for f in s.faces]}) + "\n")
    return truth_path


def read_truth(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def labelled_crops(faces_dir: str, labels: str, limit: int = 0, seed: int = 0) -> list:
    """Aligned crops listed in a ``file_name,real_age`` CSV -> FaceSources (``limit`` of them,
    chosen by ``seed``; 0 = all). Unlisted or unreadable files are an error naming the file."""
    from preprocessing import labels as label_io

    with open(labels, encoding="utf-8") as f:
        rows, rejects = label_io.parse_csv(f.read(), labels, max_age=200)
    if rejects:
        raise ValueError(f"{labels}: {len(rejects)} bad rows, first: {rejects[0]}")
    if limit and limit < len(rows):
        pick = np.random.default_rng(seed).choice(len(rows), limit, replace=False)
        rows = [rows[i] for i in sorted(pick)]
    return [aligned_crop_source(os.path.join(faces_dir, r.file_name), r.age) for r in rows]


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags, declared only when run as a program (bench/ imports this module)."""
    flags.DEFINE_string("output_dir", None, "Where scenes/ and truth.jsonl go.")
    flags.DEFINE_integer("num_scenes", 100, "How many scenes.")
    flags.DEFINE_integer("seed", 0, "Scene i depends only on (seed, i).")
    flags.DEFINE_string("faces_dir", None, "Aligned face crops (e.g. UTKFace); default: astronaut.")
    flags.DEFINE_string("labels", None, "file_name,real_age CSV for --faces_dir.")
    flags.DEFINE_integer("num_sources", 1000,
                         "How many crops of --faces_dir to draw from (0 = all).")
    flags.DEFINE_enum("paste", "ellipse", list(PASTES), "ellipse: each crop blended in through "
                      "a feathered ellipse (no hard edge for a detector to find); rectangle: "
                      "the whole crop, hair and chin kept (what age figures need).")


def main(argv) -> int:
    del argv
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    if FLAGS.faces_dir:
        if not FLAGS.labels:
            raise app.UsageError("--faces_dir needs --labels (file_name,real_age CSV)")
        sources = labelled_crops(FLAGS.faces_dir, FLAGS.labels, FLAGS.num_sources, FLAGS.seed)
    else:
        sources = [astronaut()]
    path = write(sources, FLAGS.output_dir, FLAGS.num_scenes, FLAGS.seed, FLAGS.paste)
    print(f"{FLAGS.num_scenes} scenes from {len(sources)} faces -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
