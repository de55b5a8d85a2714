"""How a photo becomes a square record: the framing, as one validated value, and its rules.

Preprocessing frames the training records with it (PIL, ``imaging.images``), stats.json records
it, and the export stores it in the SavedModel and frames served photos alike (TensorFlow,
``trainer.framing``). Both implementations must agree pixel for pixel, so every rule they share
is defined here once. No TensorFlow, no PIL.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract import limits

if TYPE_CHECKING:
    from contract.stats import Stats

RESIZE_MODES = ("crop", "pad")  # crop: fill the square, cut the overflow; pad: fit, pad black
# What preprocessing did before stats.json recorded its framing, and what a SavedModel exported
# before it stored the framing does: a centre crop with no margin.
DEFAULT_RESIZE, DEFAULT_MARGIN = "crop", 0.0
# Where the crop comes from: none = the photo is the face crop; detect = the detector's box;
# align = eyes levelled and scaled by a face measure (imaging.faces). Then the framing above.
FACE_MODES = ("none", "detect", "align")
MULTI_FACE_POLICIES = ("largest", "reject")  # several faces in one photo: keep the largest, or not

# The --image_size every stage accepts (preprocessing, the synthetic generator, the trainer).
# 32: the smallest input the Keras application backbones build (MobileNetV3, ResNet50 and
# EfficientNet refuse less), and a smaller record would only be upsampled for them.
# 1024: the largest the trainer can batch; one such image is 12 MB as float32, a batch of 64 of
# them 0.8 GB. Files written before these bounds may hold other sizes: they still load (Framing
# itself only needs a positive size).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024

# EXIF's orientation tag: preprocessing applies it before framing, and the orientations in
# TRANSPOSED_ORIENTATIONS swap the stored width and height.
EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})


class FramingError(ValueError):
    """A framing setting that cannot be used; ``field`` names it."""

    def __init__(self, field: str, value, problem: str, source: str = ""):
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{field}={value!r}: {problem}")
        self.field, self.value, self.problem = field, value, problem


def margin_problem(margin: float) -> str | None:
    """Why ``margin`` (the fraction trimmed from each side) is unusable, or None."""
    ok = _is_number(margin) and math.isfinite(margin) and 0.0 <= margin < 0.5
    return None if ok else "expected 0 <= margin < 0.5"


def image_size_problem(image_size: int) -> str | None:
    """Why ``image_size`` is not a side a new run may ask for (the flags' range), or None."""
    if _is_int(image_size) and MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        return None
    return f"expected an integer in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} pixels"


def draft_size(image_size: int, margin: float) -> int:
    """The side a JPEG may be draft-decoded down to: the trimmed photo must still cover the
    image_size square, so at least image_size / (1 - 2 * margin) pixels."""
    return math.ceil(image_size / max(1e-6, 1.0 - 2.0 * margin))


@dataclass(frozen=True)
class Framing:
    """Square side, resize mode, margin trimmed first, and the size limits checked before any
    decode. Invalid values raise FramingError naming the field."""

    image_size: int
    resize: str = DEFAULT_RESIZE
    margin: float = DEFAULT_MARGIN
    max_pixels: int = limits.MAX_PIXELS
    max_aspect_ratio: float = limits.MAX_ASPECT_RATIO

    def __post_init__(self):
        if not _is_int(self.image_size) or self.image_size < 1:
            raise FramingError("image_size", self.image_size, "must be a positive number of "
                               "pixels")
        if self.resize not in RESIZE_MODES:
            raise FramingError("resize", self.resize, f"must be one of {', '.join(RESIZE_MODES)}")
        if margin_problem(self.margin):
            raise FramingError("margin", self.margin, f"{margin_problem(self.margin)} (the "
                               "fraction of the width and height trimmed from each side)")
        if not _is_int(self.max_pixels) or self.max_pixels < 1:
            raise FramingError("max_pixels", self.max_pixels, "expected an integer >= 1")
        if not (_is_number(self.max_aspect_ratio) and math.isfinite(self.max_aspect_ratio)
                and self.max_aspect_ratio >= 1):
            raise FramingError("max_aspect_ratio", self.max_aspect_ratio, "expected >= 1")
        # One type per field whatever the caller passed (numpy ints, int margins): equal
        # framings compare and serialise alike.
        for name, kind in (("image_size", int), ("margin", float), ("max_pixels", int),
                           ("max_aspect_ratio", float)):
            object.__setattr__(self, name, kind(getattr(self, name)))

    def draft_size(self) -> int:
        return draft_size(self.image_size, self.margin)

    def served(self) -> Framing:
        """This framing with the pixel limit a shared server decodes within (SavedModel)."""
        return dataclasses.replace(self, max_pixels=min(self.max_pixels,
                                                        limits.SERVING_MAX_PIXELS))

    def same_geometry(self, other: Framing) -> bool:
        """Whether both trim and resize alike (the square's side may differ)."""
        return (self.resize, self.margin) == (other.resize, other.margin)

    def describe(self) -> str:
        return f"{self.image_size}px, {self.resize}, margin {self.margin:g}"

    def to_dict(self) -> dict:
        """The keys stats.json, metrics.json and evaluate's metrics.json hold, flat."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, value, source: str = "") -> Framing:
        """The inverse of to_dict; missing keys (older files) take the defaults, errors name
        ``source`` and the field."""
        if not isinstance(value, dict):
            raise FramingError("framing", value, "must be a JSON object", source)
        if value.get("image_size") is None:
            raise FramingError("image_size", None, "is missing", source)
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in value.items() if k in known and v is not None})
        except FramingError as e:
            raise FramingError(e.field, e.value, e.problem, source) from None

    @classmethod
    def from_stats(cls, stats: Stats, *, image_size: int = 0,
                   source: str = "stats.json") -> Framing:
        """The records' framing (older outputs: the defaults), at ``image_size`` when given
        (a model's input side), else the records' own; errors name ``source``."""
        return cls.from_dict({"image_size": image_size or stats.image_size,
                              "resize": stats.resize, "margin": stats.margin,
                              "max_pixels": stats.max_pixels,
                              "max_aspect_ratio": stats.max_aspect_ratio}, source)


def _is_int(value) -> bool:  # numpy integers count, booleans do not
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
