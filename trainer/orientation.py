"""EXIF orientation for the project's own clients (trainer.predict, deploy.serving). PIL only.

Preprocessing applies each photo's EXIF orientation before framing it
(``preprocessing.images.decode`` calls ``ImageOps.exif_transpose``), so a phone photo stored
sideways becomes an upright training record. TensorFlow's decoders ignore EXIF, so the
SavedModel's ``serving_default`` would frame that same file sideways. The clients therefore hand
the model a photo that is already upright: files whose EXIF orientation is 1 (or absent) are
passed on byte for byte (no needless re-encode, and TF still takes the JPEG draft path that
mirrors preprocessing), others are decoded *with preprocessing's own decode*, so the rotation
and mirroring are exactly the ones the training records got, and re-encoded as lossless PNG,
which serving_default decodes without changing a pixel.

No TensorFlow import here: the Vertex AI predict client should not need it.
"""

from __future__ import annotations

import contextlib
import io

from PIL import Image

from preprocessing import images

EXIF_ORIENTATION = 0x0112
# preprocessing's --max_pixels default: a larger photo would not have become a record either.
MAX_PIXELS = images.ImageConfig.max_pixels


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8) in encoded image bytes; 1 when absent or unreadable.

    Reads the header only. An unreadable file is not this function's to report: the decoder
    downstream names it (and preprocessing likewise keeps an image whose EXIF block is corrupt).
    """
    with contextlib.suppress(Exception), Image.open(io.BytesIO(data)) as header:
        return int(header.getexif().get(EXIF_ORIENTATION, 1) or 1)
    return 1


def oriented_bytes(data: bytes, draft_size: int | None = None,
                   max_pixels: int = MAX_PIXELS) -> bytes:
    """``data`` itself when it needs no reorientation, else the upright image as RGB PNG bytes.

    ``draft_size`` is the side preprocessing lets PIL's JPEG draft keep
    (``trainer.framing.draft_size``): passing it decodes at the same reduced scale the training
    records were decoded at, before rotating, so the framed pixels match them. The Vertex client
    does not know the model's input size and sends full resolution (TF then resizes from the
    full image: the same geometry, slightly different resampling of the largest photos).
    Raises ``preprocessing.images.ImageError`` (a ValueError) naming what is wrong with an
    undecodable file.
    """
    if exif_orientation(data) == 1:
        return data
    # to_rgb composites transparency onto white exactly as serving_default's PNG decode would.
    upright = images.to_rgb(images.decode(data, max_pixels, draft_size=draft_size))
    out = io.BytesIO()
    upright.save(out, format="PNG")  # lossless; default compression keeps requests small
    return out.getvalue()
