"""Faces in ordinary photos: detect them, pick one, and align it into the training crop's shape.

Importing this module is cheap: the detector (TensorFlow + the ``[faces]`` extra) loads on the
first ``detect`` call. ``align`` maps a face onto the geometry of UTKFace's aligned 200 px crops
(eyes level at 29% of the height, eye-to-mouth distance 39.5% of the side, eyes centred), so a
whole photo gives the crop a model trained on such crops expects; the stage's usual framing
(``--margin``, ``--resize``) then applies to that crop as to any record's photo.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from PIL import Image

from contract.framing import MULTI_FACE_POLICIES

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # left: as seen
MEASURES = ("eye_mouth", "box")
# The aligned crop, as fractions of its side (UTKFace's aligned crops, see preprocessing.scenes).
EYE_LINE_Y = 0.29
EYE_TO_MOUTH = 0.395  # eye midpoint to mouth midpoint
BOX_WIDTH = 0.815  # a detector's box width, for measure="box"


class MultipleFaces(ValueError):
    """More than one face where the policy wants exactly one."""


@dataclasses.dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 pixels; may reach past the edge
    landmarks: tuple[tuple[float, float], ...]  # five x, y in LANDMARKS order
    score: float

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def point(self, name: str) -> np.ndarray:
        return np.asarray(self.landmarks[LANDMARKS.index(name)], np.float64)

    def tilt(self) -> float:
        """Degrees the eye line rises to the right as seen (counter-clockwise positive)."""
        dx, dy = self.point("right_eye") - self.point("left_eye")
        return math.degrees(math.atan2(-dy, dx))

    def to_json(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box],
                "landmarks": {n: [round(float(v), 2) for v in p]
                              for n, p in zip(LANDMARKS, self.landmarks, strict=True)},
                "score": round(float(self.score), 5)}


@functools.lru_cache(maxsize=4)
def detector(side: int | None = None, min_face: int | None = None):
    """The shared graph detector (built on first use: TF and the mtcnn weights load here)."""
    from imaging import face_detector as fd

    return fd.Detector(side or fd.DETECT_SIDE, min_face or fd.MIN_FACE)


def from_outputs(outputs) -> list[Face]:
    """The detector's tensors (or numpy arrays) -> Faces, best score first."""
    boxes, marks, scores = (np.asarray(outputs[k]) for k in ("boxes", "landmarks", "scores"))
    faces = [Face(tuple(float(v) for v in b), tuple((float(x), float(y)) for x, y in m), float(s))
             for b, m, s in zip(boxes, marks, scores, strict=True)]
    return sorted(faces, key=lambda f: -f.score)


def detect(rgb: np.ndarray, det=None) -> list[Face]:
    """uint8 [H, W, 3] RGB photo -> the faces in it, best score first."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"detect: expected a uint8 [H, W, 3] RGB image, got {rgb.dtype} "
                         f"{list(rgb.shape)}")
    det = det or detector()
    return from_outputs({k: v.numpy() for k, v in det.detect_image(rgb).items()})


def choose(faces: list[Face], policy: str = "largest") -> Face | None:
    """The face to use: None without faces; the largest box, or MultipleFaces under 'reject'."""
    if policy not in MULTI_FACE_POLICIES:
        raise ValueError(f"multi_face={policy!r}: must be one of {', '.join(MULTI_FACE_POLICIES)}")
    if not faces:
        return None
    if len(faces) > 1 and policy == "reject":
        raise MultipleFaces(f"{len(faces)} faces found, multi_face=reject wants one")
    return max(faces, key=lambda f: f.area)


def iou(a, b) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def alignment_matrix(face: Face, size: int, measure: str = "eye_mouth") -> np.ndarray:
    """3x3 affine map from photo pixels to the ``size`` square aligned crop: eyes level, the
    face measure (eye-to-mouth distance, or the box width) scaled to the template's."""
    if measure not in MEASURES:
        raise ValueError(f"measure={measure!r}: must be one of {', '.join(MEASURES)}")
    if size < 1:
        raise ValueError(f"size={size}: must be a positive number of pixels")
    left, right = face.point("left_eye"), face.point("right_eye")
    eyes = (left + right) / 2
    mouth = (face.point("mouth_left") + face.point("mouth_right")) / 2
    angle = math.atan2(*(right - left)[::-1])  # the eye line's angle in image axes (y down)
    if measure == "eye_mouth":
        scale = EYE_TO_MOUTH * size / max(1e-6, float(np.linalg.norm(mouth - eyes)))
    else:
        scale = BOX_WIDTH * size / max(1e-6, face.box[2] - face.box[0])
    c, s = math.cos(-angle) * scale, math.sin(-angle) * scale
    target = np.array([size / 2, EYE_LINE_Y * size])
    rot = np.array([[c, -s], [s, c]])
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = rot, target - rot @ eyes
    return m


def transform_points(matrix: np.ndarray, points) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def crop_box(image: np.ndarray, face: Face) -> np.ndarray:
    """The face's box, rounded outwards; what lies past the photo's edge is black."""
    x0, y0, x1, y1 = face.box
    box = (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))
    return np.asarray(Image.fromarray(np.asarray(image, np.uint8)).crop(box))


def align(image: np.ndarray, face: Face, size: int = 224, measure: str = "eye_mouth"):
    """uint8 [H, W, 3] photo -> uint8 [size, size, 3] aligned crop (black past the photo's edge)."""
    inverse = np.linalg.inv(alignment_matrix(face, size, measure))
    coeffs = tuple(inverse[:2].ravel())  # PIL maps each output pixel back into the photo
    out = Image.fromarray(np.asarray(image, np.uint8)).transform(
        (size, size), Image.AFFINE, coeffs, resample=Image.BICUBIC)
    return np.asarray(out)
