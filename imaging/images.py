"""One image file's bytes -> one framed RGB JPEG plus quality measures. Pure functions.

Nothing here knows about Beam or files: the pipeline's DoFn and the benchmark's loop call
``process`` on bytes, and the tests call each step. A broken input raises ``ImageError`` whose
``reason`` is a ``contract.reasons`` code. Order: the header's size is checked before decoding (a
bomb costs a header read); JPEGs decode at a reduced ``draft`` scale when the square is much
smaller; EXIF orientation is applied before any geometry, then every mode becomes 8-bit RGB; the
photo is framed once (``contract.framing``) and blur/brightness are measured on that square, so
they compare across resolutions.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from contract import limits, reasons
from contract.framing import EXIF_ORIENTATION, RESIZE_MODES, TRANSPOSED_ORIENTATIONS, Framing

SIZE_REASONS = {  # contract.limits.size_problem kind -> reason code
    limits.PIXELS: reasons.TOO_MANY_PIXELS, limits.ASPECT: reasons.EXTREME_ASPECT_RATIO}
# Transparent pixels are composited onto white: cut-out portraits are usually shown on white.
_BACKGROUND = (255, 255, 255)


class ImageError(ValueError):
    """An input that cannot become a record; ``reason`` is a contract.reasons code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageConfig:
    framing: Framing = Framing(image_size=224)
    jpeg_quality: int = 90


@dataclass(frozen=True)
class ProcessedImage:
    jpeg: bytes
    height: int
    width: int
    original_height: int
    original_width: int
    blur: float
    brightness: float


def decode(data: bytes, max_pixels: int, draft_size: int | None = None,
           max_aspect_ratio: float = limits.MAX_ASPECT_RATIO) -> Image.Image:
    """Decodes bytes to a fully loaded, EXIF-oriented PIL image (any mode)."""
    return decode_sized(data, max_pixels, draft_size, max_aspect_ratio)[0]


def decode_sized(data: bytes, max_pixels: int, draft_size: int | None = None,
                 max_aspect_ratio: float = limits.MAX_ASPECT_RATIO,
                 ) -> tuple[Image.Image, tuple[int, int]]:
    """decode, and the (width, height) of the stored photo as displayed (before draft, after
    EXIF rotation), read from the same open: a second Image.open costs a third of a decode."""
    if not data:
        raise ImageError(reasons.EMPTY_FILE, "the file has 0 bytes")
    with warnings.catch_warnings():
        # Our own max_pixels check below is the guard; PIL's warning would only add noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise ImageError(reasons.TOO_MANY_PIXELS, str(e)) from e
        except (OSError, SyntaxError, ValueError) as e:  # UnidentifiedImageError is an OSError
            declared = _declared_size(data)
            if declared and 0 in declared:
                # Pillow refuses such headers outright; say what is actually wrong.
                raise ImageError(reasons.ZERO_SIZE_IMAGE,
                                 f"header declares {declared[0]}x{declared[1]} pixels") from e
            if "truncat" in str(e).lower():
                raise ImageError(reasons.TRUNCATED_IMAGE,
                                 f"file ends inside the header: {e}") from e
            if isinstance(e, UnidentifiedImageError):
                raise ImageError(reasons.UNREADABLE_IMAGE,
                                 f"not an image format Pillow can read ({len(data)} bytes)") from e
            raise ImageError(reasons.UNREADABLE_IMAGE, f"bad image header: {e}") from e
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(reasons.ZERO_SIZE_IMAGE, f"image is {width}x{height} pixels")
        problem = limits.size_problem(width, height, max_pixels=max_pixels,
                                      max_aspect_ratio=max_aspect_ratio)
        if problem:
            kind, message = problem
            raise ImageError(SIZE_REASONS[kind], message)
        original = _displayed_size(image)
        if draft_size and image.format == "JPEG":
            # Requests a square so the result is big enough whichever way EXIF rotates it.
            image.draft(image.mode, (draft_size, draft_size))
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(reasons.TRUNCATED_IMAGE,
                             f"pixel data could not be decoded: {e}") from e
    # A corrupt EXIF block must not lose an intact image: keep it as stored.
    with contextlib.suppress(Exception):
        image = ImageOps.exif_transpose(image)
    if image.width <= 0 or image.height <= 0:
        raise ImageError(reasons.ZERO_SIZE_IMAGE, f"image is {image.width}x{image.height} pixels")
    return image, original


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: grey, palette, alpha, CMYK, 16/32-bit integer, float."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        # 16-bit grey (I;16*, or I holding 0..65535): keep the top 8 bits. Float: clip to 0..255.
        pixels = np.asarray(image, dtype=np.float64)
        if mode != "F":
            pixels = pixels / 257.0
        grey = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def fit(image: Image.Image, size: int, mode: str = "crop", margin: float = 0.0) -> Image.Image:
    """Trims ``margin`` from each side, then makes a ``size`` x ``size`` square keeping aspect."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if margin:
        dx, dy = round(image.width * margin), round(image.height * margin)
        if image.width - 2 * dx >= 1 and image.height - 2 * dy >= 1:
            image = image.crop((dx, dy, image.width - dx, image.height - dy))
    width, height = image.size
    # crop: the short side fills the square; pad: the long side does.
    scale = size / (min(width, height) if mode == "crop" else max(width, height))
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if mode == "pad":  # rounding must not push the long side past the square
        new_w, new_h = min(size, new_w), min(size, new_h)
    resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    if mode == "crop":
        left, top = (resized.width - size) // 2, (resized.height - size) // 2
        return resized.crop((left, top, left + size, top + size))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return canvas


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    # No EXIF or ICC is written: orientation is already applied and the pixels are plain sRGB.
    image.save(out, format="JPEG", quality=quality, optimize=False)
    return out.getvalue()


def blur_score(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low = blurry (few edges), high = sharp."""
    g = grey.astype(np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1])
    return float(lap.var())


def brightness(grey: np.ndarray) -> float:
    """Mean luma scaled to [0, 1]."""
    return float(grey.mean()) / 255.0


def process(data: bytes, config: ImageConfig) -> ProcessedImage:
    """The whole per-image stage: bytes -> ProcessedImage, or ImageError naming the reason."""
    framing = config.framing
    image, original = decode_sized(data, framing.max_pixels, draft_size=framing.draft_size(),
                                   max_aspect_ratio=framing.max_aspect_ratio)
    return frame(to_rgb(image), config, original)


def frame(rgb: Image.Image, config: ImageConfig, original: tuple[int, int]) -> ProcessedImage:
    """An RGB face crop -> its framed square, encoded and measured; ``original`` is the
    (width, height) of the photo it came from, as displayed."""
    framing = config.framing
    square = fit(rgb, framing.image_size, framing.resize, framing.margin)
    grey = np.asarray(square.convert("L"))
    return ProcessedImage(
        jpeg=encode_jpeg(square, config.jpeg_quality),
        height=framing.image_size,
        width=framing.image_size,
        original_height=original[1],
        original_width=original[0],
        blur=blur_score(grey),
        brightness=brightness(grey),
    )


def _displayed_size(opened: Image.Image) -> tuple[int, int]:
    """(width, height) of a just-opened (not yet drafted or loaded) photo as displayed."""
    width, height = opened.size
    try:
        orientation = opened.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block is ignored, as decode ignores it
        orientation = 1
    if orientation in TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return width, height


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C4, C8 and CC are other segment types in the same range).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without Pillow, or None if not found."""
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if marker in _JPEG_SOF:
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None
