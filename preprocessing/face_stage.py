"""The load stage's framing step, with or without a face search (``--face``, ``--multi_face``).

``framer(config)`` gives the object the load DoFn frames each photo's bytes with:

- ``none``: ``imaging.images.process``, today's framing of a photo that is a face crop already;
- ``detect``: decode the whole photo (EXIF-oriented, undrafted, so boxes are in its pixels),
  find faces (imaging.faces, an MTCNN TensorFlow graph), choose one by ``--multi_face``, cut its
  box; ``align``: map it onto the aligned-crop template instead (eyes level, eye-to-mouth
  distance fixed, as trainer.predict --face=align does). Then ``--margin`` and ``--resize``.

A photo without a face, or with several under ``reject``, raises ImageError with reason
no_face or multi_face: it becomes a dead letter like any unreadable image. TensorFlow is
imported in ``setup`` (DoFn.setup: once per worker process), never by a --face=none job.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
from PIL import Image

from contract import reasons
from imaging import faces, images

# The shard summaries' key for written photos whose largest face was kept among several.
MULTI_FACE_KEPT = "multi_face_kept"


class Framed(NamedTuple):
    image: images.ProcessedImage
    face: faces.Face | None  # None with --face=none
    faces_found: int  # faces the detector found in the photo (0 with --face=none)


class PlainFramer:
    """--face=none: the photo is the face crop."""

    def __init__(self, config: images.ImageConfig):
        self.config = config

    def setup(self) -> None:
        pass

    def frame(self, data: bytes) -> Framed:
        return Framed(images.process(data, self.config), None, 0)


class FaceFramer:
    """--face=detect|align: the face the detector finds, chosen by ``multi_face``."""

    def __init__(self, config: images.ImageConfig, mode: str, multi_face: str):
        if mode not in ("detect", "align"):
            raise ValueError(f"face={mode!r}: FaceFramer needs detect or align")
        self.config, self.mode, self.multi_face = config, mode, multi_face
        self.detector = None  # built in setup, on the worker: not pickled with the DoFn

    def setup(self) -> None:
        # Grappler logs a cost-model warning per traced crop op at start-up: noise in a job's
        # log. Only before TensorFlow is first imported, and never over the user's own choice.
        if "tensorflow" not in sys.modules:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.detector = faces.detector()  # TensorFlow and the weights load here, once a process

    def frame(self, data: bytes) -> Framed:
        if self.detector is None:
            self.setup()
        framing = self.config.framing
        photo = images.decode(data, framing.max_pixels, None, framing.max_aspect_ratio)
        rgb = np.asarray(images.to_rgb(photo))
        found = faces.detect(rgb, self.detector)
        face = choose(found, self.multi_face)
        if self.mode == "align":
            # The template's side such that the trimmed crop is about image_size already:
            # the framing's resize is then nearly 1:1, not a second resampling of the face.
            crop = faces.align(rgb, face, framing.draft_size())
        else:
            crop = faces.crop_box(rgb, face)
        framed = images.frame(Image.fromarray(crop), self.config,
                              (rgb.shape[1], rgb.shape[0]))
        return Framed(framed, face, len(found))


def choose(found: list[faces.Face], multi_face: str) -> faces.Face:
    """The face to frame, or ImageError no_face / multi_face."""
    try:
        face = faces.choose(found, multi_face)
    except faces.MultipleFaces:
        raise images.ImageError(reasons.MULTI_FACE, f"{len(found)} faces found; "
                                "--multi_face=reject keeps photos with one face") from None
    if face is None:
        raise images.ImageError(reasons.NO_FACE, "the face detector found no face")
    return face


def framer(config) -> PlainFramer | FaceFramer:
    """The framer for a preprocessing.options.JobConfig."""
    if config.face == "none":
        return PlainFramer(config.image)
    return FaceFramer(config.image, config.face, config.multi_face)


def stats_entry(config, rejects: Mapping[str, int], shards: Iterable[dict]) -> dict | None:
    """stats.json's "faces" (contract.stats.FaceStats) from the run's reject counts and shard
    summaries; None for --face=none."""
    if config.face == "none":
        return None
    return {"mode": config.face, "multi_face": config.multi_face,
            "no_face": rejects.get(reasons.NO_FACE, 0),
            "multi_face_kept": sum(s.get(MULTI_FACE_KEPT, 0) for s in shards),
            "multi_face_rejected": rejects.get(reasons.MULTI_FACE, 0)}
