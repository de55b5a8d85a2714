"""One label + one processed image -> the record a shard holds (``schema.encode`` makes its bytes).

The Beam job and the benchmark's plain loop both build records here, so they do the same work.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract import schema
from imaging.faces import Face
from imaging.images import ProcessedImage
from preprocessing import split


def face_record(file_name: str, age: float, extra: Mapping[str, str], image: ProcessedImage,
                original_bytes: bytes, face: Face | None = None) -> dict:
    """The schema's fields for one face (``extra``: label columns by name); ``face``, when the
    photo was searched for one, adds its box, landmarks and score."""
    record = {
        schema.IMAGE: image.jpeg, schema.HEIGHT: image.height, schema.WIDTH: image.width,
        schema.ORIGINAL_HEIGHT: image.original_height,
        schema.ORIGINAL_WIDTH: image.original_width, schema.FILENAME: file_name,
        schema.AGE: age, schema.ID: split.record_id(original_bytes), schema.BLUR: image.blur,
        schema.BRIGHTNESS: image.brightness, "extra": dict(extra),
    }
    if face is not None:
        record.update({schema.FACE_BOX: face.box, schema.FACE_LANDMARKS: face.landmarks,
                       schema.FACE_SCORE: face.score})
    return record

