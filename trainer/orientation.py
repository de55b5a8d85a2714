"""Photo bytes the SavedModel frames as preprocessing framed them, for the project's own clients
(trainer.predict, deploy.serving). PIL only.

Preprocessing applies each photo's EXIF orientation before framing it
(``imaging.images.decode`` calls ``ImageOps.exif_transpose``), so a phone photo stored
sideways becomes an upright training record. TensorFlow's decoders ignore EXIF, so the
SavedModel's ``serving_default`` would frame that same file sideways. The clients therefore hand
the model a photo that is already upright: files whose EXIF orientation is 1 (or absent) are
passed on byte for byte (no needless re-encode, and TF still takes the JPEG draft path that
mirrors preprocessing), others are decoded *with preprocessing's own decode*, so the rotation
and mirroring are exactly the ones the training records got, and re-encoded as lossless PNG,
which serving_default decodes without changing a pixel.

``model_bytes`` (trainer.predict, deploy.serving) first does what preprocessing does before
decoding: the header's declared size is checked against ``contract.limits`` (``check_header``),
so a few hundred bytes declaring gigapixels (or a 1 x N strip that framing would scale N times)
cost a header read; formats Pillow reads but serving_default does not (TIFF, WebP, ...) are
re-encoded as PNG.

No TensorFlow import here: the Vertex AI predict client should not need it.
"""

from __future__ import annotations

import contextlib
import io
import warnings

from PIL import Image

from contract import limits, reasons
from contract.framing import EXIF_ORIENTATION
from imaging import images

# preprocessing's --max_pixels default: a larger photo would not have become a record either.
MAX_PIXELS = limits.MAX_PIXELS
# What serving_default's decode reads (trainer.framing.decode), as Pillow names the formats.
SERVED_FORMATS = ("JPEG", "PNG", "BMP", "GIF")


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8) in encoded image bytes; 1 when absent or unreadable.

    Reads the header only. An unreadable file is not this function's to report: the decoder
    downstream names it (and preprocessing likewise keeps an image whose EXIF block is corrupt).
    """
    with contextlib.suppress(Exception), Image.open(io.BytesIO(data)) as header:
        return int(header.getexif().get(EXIF_ORIENTATION, 1) or 1)
    return 1


def _upright_png(data: bytes, draft_size: int | None, max_pixels: int) -> bytes:
    # to_rgb composites transparency onto white exactly as serving_default's PNG decode would.
    upright = images.to_rgb(images.decode(data, max_pixels, draft_size=draft_size))
    out = io.BytesIO()
    upright.save(out, format="PNG")  # lossless; default compression keeps requests small
    return out.getvalue()


def check_header(data: bytes, *, max_pixels: int = MAX_PIXELS,
                 max_aspect_ratio: float = limits.MAX_ASPECT_RATIO) -> str:
    """The format Pillow names from the header alone, after checking the declared size against
    contract.limits; raises ``imaging.images.ImageError`` with a one-line reason."""
    if not data:
        raise images.ImageError(reasons.EMPTY_FILE, "the file has 0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as header:  # lazy: parses the header only
                kind, (width, height) = header.format, header.size
        except Image.DecompressionBombError as e:  # Pillow's own limit, above ours
            raise images.ImageError(reasons.TOO_MANY_PIXELS, str(e)) from None
        except Exception:  # noqa: BLE001 - any header Pillow cannot parse is the same refusal
            raise images.ImageError(reasons.UNREADABLE_IMAGE,
                                    f"not an image format Pillow can read ({len(data)} bytes)"
                                    ) from None
    if width <= 0 or height <= 0:
        raise images.ImageError(reasons.ZERO_SIZE_IMAGE, f"header declares {width}x{height}")
    problem = limits.size_problem(width, height, max_pixels=max_pixels,
                                  max_aspect_ratio=max_aspect_ratio)
    if problem:
        raise images.ImageError(images.SIZE_REASONS[problem[0]],
                                f"refused before decoding: {problem[1]}")
    return kind


def model_bytes(data: bytes, draft_size: int | None = None, *, max_pixels: int = MAX_PIXELS,
                max_aspect_ratio: float = limits.MAX_ASPECT_RATIO) -> bytes:
    """Bytes serving_default frames as preprocessing framed this photo, checked before decoding.

    The header alone is read first: a format Pillow cannot read, or a declared size over
    ``max_pixels`` or ``max_aspect_ratio`` (contract.limits.size_problem), raises
    ``imaging.images.ImageError`` with a one-line reason and nothing is decoded. Then
    ``data`` itself when serving_default decodes its format and it needs no reorientation, else
    the upright image as RGB PNG bytes. ``draft_size`` is the side preprocessing lets PIL's JPEG
    draft keep (``trainer.framing.draft_size``): passing it decodes at the reduced scale the
    training records were decoded at, before rotating, so the framed pixels match them. The
    Vertex client does not know the model's input size and sends full resolution.
    """
    kind = check_header(data, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    if kind in SERVED_FORMATS and exif_orientation(data) == 1:
        return data
    return _upright_png(data, draft_size, max_pixels)
