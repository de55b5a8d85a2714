"""The geometry every record is framed with, defined once for preprocessing (PIL) and the
trainer's served-photo framing (TensorFlow), which must agree pixel for pixel."""

from __future__ import annotations

import math

RESIZE_MODES = ("crop", "pad")  # crop: fill the square, cut the overflow; pad: fit, pad black
# What preprocessing did before stats.json recorded its framing, and what a SavedModel exported
# before it stored the framing does: a centre crop with no margin.
DEFAULT_RESIZE, DEFAULT_MARGIN = "crop", 0.0
# Where the crop comes from: none = the photo is the face crop; detect = the detector's box;
# align = eyes levelled and scaled by a face measure (imaging.faces). Then the framing above.
FACE_MODES = ("none", "detect", "align")
MULTI_FACE_POLICIES = ("largest", "reject")  # several faces in one photo: keep the largest, or not


def margin_problem(margin: float) -> str | None:
    """Why ``margin`` (the fraction trimmed from each side) is unusable, or None."""
    return None if 0.0 <= float(margin) < 0.5 else "expected 0 <= margin < 0.5"


def draft_size(image_size: int, margin: float) -> int:
    """The side a JPEG may be draft-decoded down to: the trimmed photo must still cover the
    image_size square, so at least image_size / (1 - 2 * margin) pixels."""
    return math.ceil(image_size / max(1e-6, 1.0 - 2.0 * margin))
