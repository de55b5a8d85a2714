"""Photo bytes the SavedModel frames as preprocessing framed them, for the project's own clients
(trainer.predict, deploy.serving). PIL only: the Vertex AI predict client should not need TF.

Preprocessing applies EXIF orientation before framing; TensorFlow's decoders ignore it, so
serving_default would frame a sideways-stored phone photo sideways. Clients therefore send a
photo that is upright already: orientation 1 (or none) passes byte for byte (TF then takes the
same JPEG draft path), others are decoded with preprocessing's own decode, so they turn exactly as
the records did, and re-sent as lossless PNG. Formats serving_default does not read are re-encoded
too, and the header's size is checked against ``contract.limits`` before anything is decoded.
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

    An unreadable header or one over the limits raises ``imaging.images.ImageError`` (see
    ``check_header``) with nothing decoded. Returns ``data`` itself when serving_default reads its
    format and it needs no turning, else the upright image as RGB PNG. ``draft_size``
    (``Framing.draft_size()``) decodes at the reduced scale the records were decoded at, so the
    framed pixels match; the Vertex client does not know the model's size and sends full scale.
    """
    kind = check_header(data, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    if kind in SERVED_FORMATS and exif_orientation(data) == 1:
        return data
    return _upright_png(data, draft_size, max_pixels)
