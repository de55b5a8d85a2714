"""imaging.images: every image kind decodes to the same RGB square; bad bytes get a reason."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from contract import reasons
from contract.framing import Framing
from imaging import images

CONFIG = images.ImageConfig(Framing(image_size=16))


def _pattern(width=48, height=32) -> Image.Image:
    """Left half dark, right half bright, a red square top-left: orientation is visible."""
    pixels = np.full((height, width, 3), 40, np.uint8)
    pixels[:, width // 2:] = 220
    pixels[:8, :8] = (255, 0, 0)
    return Image.fromarray(pixels)


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _png_header(width, height) -> bytes:
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _sixteen_bit_grey() -> bytes:
    pixels = np.tile(np.linspace(0, 65535, 48, dtype=np.uint16), (32, 1))
    return _save(Image.fromarray(pixels), "PNG")


KINDS = {
    "jpeg": lambda: _save(_pattern(), "JPEG", quality=95),
    "png": lambda: _save(_pattern(), "PNG"),
    "webp": lambda: _save(_pattern(), "WEBP", lossless=True),
    "grey": lambda: _save(_pattern().convert("L"), "PNG"),
    "rgba": lambda: _save(_pattern().convert("RGBA"), "PNG"),
    "cmyk": lambda: _save(_pattern().convert("CMYK"), "JPEG", quality=95),
    "palette": lambda: _save(_pattern().convert("P"), "PNG"),
    "16-bit grey": _sixteen_bit_grey,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_becomes_an_rgb_jpeg_of_the_configured_size(kind):
    result = images.process(KINDS[kind](), CONFIG)
    decoded = Image.open(io.BytesIO(result.jpeg))
    assert decoded.format == "JPEG" and decoded.mode == "RGB"
    assert decoded.size == (16, 16) == (result.width, result.height)
    assert (result.original_width, result.original_height) == (48, 32)
    pixels = np.asarray(decoded, dtype=float)
    # Crop keeps the centre 32x32 of the 48x32 picture: dark left half, bright right half.
    assert pixels[:, :6].mean() < pixels[:, -6:].mean() - 100
    assert 0.0 < result.brightness < 1.0 and result.blur > 0


def test_rgba_transparency_is_composited_on_white():
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    rgb = images.to_rgb(Image.open(io.BytesIO(_save(clear, "PNG"))))
    assert rgb.mode == "RGB" and rgb.getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_keeps_the_full_range():
    image = images.to_rgb(Image.open(io.BytesIO(_sixteen_bit_grey())))
    grey = np.asarray(image)[..., 0]
    assert grey.min() == 0 and grey.max() == 255


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; display rotated 90 degrees clockwise
    data = _save(_pattern(), "JPEG", quality=95, exif=exif.tobytes())
    decoded = images.decode(data, max_pixels=10**6)
    assert decoded.size == (32, 48)  # width and height swapped on display
    # The red corner (top-left as stored) is top-right after a clockwise turn.
    assert np.asarray(decoded)[2, -3, 0] > 200 and np.asarray(decoded)[2, -3, 1] < 60
    result = images.process(data, CONFIG)
    assert (result.original_width, result.original_height) == (32, 48)


def test_pad_keeps_the_whole_picture_and_crop_fills_the_square():
    wide = Image.new("RGB", (40, 10), (200, 200, 200))
    padded = np.asarray(images.fit(wide, 20, "pad"))
    assert padded.shape == (20, 20, 3)
    assert padded[0, 10].tolist() == [0, 0, 0] and padded[10, 10].tolist() == [200, 200, 200]
    cropped = np.asarray(images.fit(wide, 20, "crop"))
    assert cropped.shape == (20, 20, 3) and (cropped > 150).all()


def test_margin_trims_each_side_before_resizing():
    framed = Image.new("RGB", (40, 40), (0, 0, 0))
    framed.paste((255, 255, 255), (10, 10, 30, 30))  # white face inside a 10 px black border
    assert np.asarray(images.fit(framed, 20, "crop", margin=0.25)).min() > 200
    assert np.asarray(images.fit(framed, 20, "crop", margin=0.0)).min() < 50


def test_blur_score_falls_when_the_image_is_blurred():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (32, 32)).astype(np.uint8)
    soft = np.asarray(Image.fromarray(sharp).resize((8, 8)).resize((32, 32), Image.BILINEAR))
    assert images.blur_score(soft) < images.blur_score(sharp) / 5
    assert images.blur_score(np.full((32, 32), 7, np.uint8)) == 0.0
    assert images.brightness(np.full((4, 4), 255, np.uint8)) == 1.0


BROKEN = {
    "empty": (b"", reasons.EMPTY_FILE),
    "random bytes": (b"this is not an image at all" * 4, reasons.UNREADABLE_IMAGE),
    "truncated jpeg": (None, reasons.TRUNCATED_IMAGE),
    "truncated png": (None, reasons.TRUNCATED_IMAGE),
    "zero width png": (_png_header(0, 10), reasons.ZERO_SIZE_IMAGE),
    "too many pixels": (_png_header(5000, 5000), reasons.TOO_MANY_PIXELS),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_bytes_raise_with_the_right_reason(kind):
    data, reason = BROKEN[kind]
    if kind == "truncated jpeg":
        full = _save(_pattern(), "JPEG")
        data = full[:full.find(b"\xff\xda") + 40]  # headers intact, pixel data cut short
    elif kind == "truncated png":
        full = _save(_pattern(), "PNG")
        data = full[:len(full) // 2]
    with pytest.raises(images.ImageError) as error:
        images.process(data, images.ImageConfig(Framing(image_size=16, max_pixels=1_000_000)))
    assert error.value.reason == reason
    assert error.value.detail
