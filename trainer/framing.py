"""Served photos framed exactly like preprocessing framed the training records. Pure TF.

The SavedModel (trainer.export) and trainer.predict get raw photos, so they repeat
``imaging.images``' framing (``contract.framing``: margin trim, crop or pad, bicubic resize) in
TensorFlow ops that trace into the SavedModel: a model served faces framed unlike its records
would be measured on one thing and deployed on another. Mirrored: PIL's JPEG draft scale, alpha
composited onto white, Python's round-half-even sizes, PIL's BICUBIC filter (see each function).
Not mirrored: EXIF orientation (clients orient first, trainer.orientation) and PIL's
``reducing_gap`` pre-shrink; PIL also rounds to 8 bits between its two resampling passes, so
pixels differ by under a level (tests/test_framing.py bounds it).
"""

from __future__ import annotations

import tensorflow as tf

from contract.framing import Framing, draft_size

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG"
_GIF_MAGIC = b"GIF8"
_BMP_MAGIC = b"BM"
_HEADER_BYTES = 26  # every width/height read below lies in the first 26 bytes
_DRAFT_RATIOS = (1, 2, 4, 8)  # the DCT scalings libjpeg offers, as PIL's draft() tries them


def decode(image_bytes, image_size: int, margin: float = 0.0, full_size: bool = False):
    """Encoded JPEG/PNG/BMP/GIF bytes (scalar string) -> uint8 [H, W, 3], decoded like PIL.

    ``full_size``: no JPEG draft scaling (whole photos, whose faces are cut out later).
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    draft = draft_size(image_size, margin)
    magic = tf.strings.substr(image_bytes, 0, 4)

    def jpeg():
        if full_size:
            return tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE")
        shape = tf.io.extract_jpeg_shape(image_bytes)
        # PIL: the largest of 8, 4, 2 that min(width // draft, height // draft) reaches, else 1.
        fits = tf.minimum(shape[0] // draft, shape[1] // draft)
        index = tf.reduce_sum(tf.cast(fits >= tf.constant(_DRAFT_RATIOS[1:]), tf.int32))
        return tf.switch_case(index, [
            # The same DCT scale as PIL's draft, so the integer trim and resize sizes agree, and
            # libjpeg's default accurate integer DCT, as PIL uses.
            (lambda r=r: tf.io.decode_jpeg(image_bytes, channels=3, ratio=r,
                                           dct_method="INTEGER_ACCURATE"))
            for r in _DRAFT_RATIOS])

    def png():  # onto white, as to_rgb does: round((rgb * a + 255 * (255 - a)) / 255)
        rgba = tf.io.decode_png(image_bytes, channels=4)
        # In exact 16-bit integers (at most 255 * 255): a third of float32's memory per pixel.
        rgb, alpha = tf.cast(rgba[..., :3], tf.uint16), tf.cast(rgba[..., 3:], tf.uint16)
        over_white = rgb * alpha + 255 * (255 - alpha)
        return tf.cast((over_white + 127) // 255, tf.uint8)

    def other():  # BMP, GIF (first frame)
        return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)

    image = tf.case([(tf.strings.substr(magic, 0, 3) == _JPEG_MAGIC, jpeg),
                     (magic == _PNG_MAGIC, png)], default=other, exclusive=True)
    image.set_shape([None, None, 3])
    return image


def declared_size(image_bytes, gif: bool = True):
    """(width, height) int64 from the header alone, nothing decoded; (0, 0) when the bytes are
    no JPEG, PNG, BMP or (if ``gif``) GIF, or too short to say."""
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    head = tf.io.decode_raw(tf.strings.substr(image_bytes, 0, _HEADER_BYTES), tf.uint8)
    b = tf.cast(tf.pad(head, [[0, _HEADER_BYTES - tf.size(head)]]), tf.int64)  # short: zeros

    def uint(start, count, big_endian):
        digits = b[start:start + count] if big_endian else b[start:start + count][::-1]
        return tf.reduce_sum(digits * (256 ** tf.range(count - 1, -1, -1, dtype=tf.int64)))

    def jpeg():  # scans to the frame header; raises InvalidArgument on a broken JPEG
        height_width = tf.cast(tf.io.extract_jpeg_shape(image_bytes)[:2], tf.int64)
        return height_width[::-1]

    def png():  # IHDR must be the first chunk: 4-byte big-endian width, then height
        ihdr = tf.reduce_all(tf.equal(b[12:16], tf.constant(list(b"IHDR"), tf.int64)))
        return tf.where(ihdr, tf.stack([uint(16, 4, True), uint(20, 4, True)]), 0)

    def gif_screen():  # logical screen: little-endian 16-bit width, height
        return tf.stack([uint(6, 2, False), uint(8, 2, False)])

    def bmp():  # 12-byte core header: 16-bit sizes; else 32-bit, height negative = top-down
        core = uint(14, 4, False) == 12
        height = uint(22, 4, False)
        height = tf.abs(tf.where(height >= 2**31, height - 2**32, height))
        return tf.where(core, tf.stack([uint(18, 2, False), uint(20, 2, False)]),
                        tf.stack([uint(18, 4, False), height]))

    magic = tf.strings.substr(image_bytes, 0, 4)
    cases = [(tf.strings.substr(magic, 0, 3) == _JPEG_MAGIC, jpeg), (magic == _PNG_MAGIC, png),
             (tf.strings.substr(magic, 0, 2) == _BMP_MAGIC, bmp)]
    if gif:
        cases.append((magic == _GIF_MAGIC, gif_screen))
    return tf.case(cases, default=lambda: tf.zeros([2], tf.int64), exclusive=True)


def check_size(tensor, width, height, max_pixels: int, max_aspect_ratio: float,
               what: str = "image_bytes", formats: str = "JPEG, PNG, GIF or BMP"):
    """``tensor``, usable only after width x height passed contract.limits' checks: otherwise
    InvalidArgument naming the limit (the same wording as limits.size_problem)."""
    width, height = tf.cast(width, tf.int64), tf.cast(height, tf.int64)
    pixels = width * height
    short, long = tf.minimum(width, height), tf.maximum(width, height)
    ratio = tf.cast(long, tf.float64) / tf.cast(tf.maximum(short, 1), tf.float64)
    size = tf.strings.format("{}x{}", (width, height))
    message = tf.case([
        (short < 1, lambda: tf.strings.join(
            [what, f": not a {formats} image with a positive width and height (declared ",
             size, ")"])),
        (pixels > max_pixels, lambda: tf.strings.join(
            [what, ": ", size, " = ", tf.strings.as_string(pixels), " pixels > max_pixels ",
             str(max_pixels)])),
        (ratio > max_aspect_ratio, lambda: tf.strings.join(
            [what, ": ", size, " has aspect ratio ", tf.strings.as_string(ratio, precision=1),
             " > max_aspect_ratio ", f"{max_aspect_ratio:g}"]))],
        default=lambda: tf.constant(""))
    ok = tf.debugging.Assert(tf.equal(message, ""), [message])
    with tf.control_dependencies([ok]):
        return tf.identity(tensor)


def check_declared_size(image_bytes, max_pixels: int, max_aspect_ratio: float,
                        gif: bool = True):
    """The bytes, gated on their header's size passing the limits: put it before a decode.

    ``gif=False`` refuses GIF: its header gives the screen, not the frames, and the decode
    holds every frame, each as large as it declares itself.
    """
    size = declared_size(image_bytes, gif)
    return check_size(image_bytes, size[0], size[1], max_pixels, max_aspect_ratio,
                      formats="JPEG, PNG, GIF or BMP" if gif else "JPEG, PNG or BMP")


def frame(images, image_size: int, resize: str = "crop", margin: float = 0.0):
    """[H, W, 3] or [B, H, W, 3] (any dtype, 0..255) -> float32 [..., image_size, image_size, 3].

    The geometry of ``imaging.images.fit``: trim ``margin`` of the width and height from
    each side (skipped when nothing would remain), scale so the short side (crop) or the long
    side (pad) is ``image_size``, then cut the overflow evenly or centre it on black.
    """
    Framing(image_size, resize, margin)  # FramingError naming a bad setting
    # No float copy of the full-size photo: the resize reads uint8 and writes float32.
    if images.dtype not in (tf.uint8, tf.float32):
        images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    height, width = shape[-3], shape[-2]
    # tf.round on float64 rounds half to even, as Python's round in images.fit does.
    if margin:
        dy = tf.cast(tf.round(tf.cast(height, tf.float64) * margin), tf.int32)
        dx = tf.cast(tf.round(tf.cast(width, tf.float64) * margin), tf.int32)
        keep = tf.logical_and(height - 2 * dy >= 1, width - 2 * dx >= 1)
        dy, dx = tf.where(keep, dy, 0), tf.where(keep, dx, 0)
        images = images[..., dy:height - dy, dx:width - dx, :]
        height, width = height - 2 * dy, width - 2 * dx
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = image_size / (tf.minimum(h, w) if resize == "crop" else tf.maximum(h, w))
    new_h = tf.maximum(1, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(1, tf.cast(tf.round(w * scale), tf.int32))
    if resize == "pad":  # rounding must not push the long side past the square
        new_h, new_w = tf.minimum(image_size, new_h), tf.minimum(image_size, new_w)
    # Keys cubic (a = -0.5) with its support widened by the downscale factor: PIL's BICUBIC.
    resized = tf.image.resize(images, tf.stack([new_h, new_w]), method="bicubic",
                              antialias=True)
    resized = tf.clip_by_value(resized, 0.0, 255.0)  # cubic lobes overshoot at edges
    if resize == "crop":
        top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
        out = resized[..., top:top + image_size, left:left + image_size, :]
    else:
        top, left = (image_size - new_h) // 2, (image_size - new_w) // 2
        out = tf.image.pad_to_bounding_box(resized, top, left, image_size, image_size)
    if out.shape.rank is None:
        return out
    return tf.ensure_shape(out, [None] * (out.shape.rank - 3) + [image_size, image_size, 3])


def decode_and_frame(image_bytes, framing: Framing):
    """One photo's bytes -> float32 [image_size, image_size, 3], framed like its record."""
    return frame(decode(image_bytes, framing.image_size, framing.margin), framing.image_size,
                 framing.resize, framing.margin)


def read_framing(loaded) -> Framing:
    """The framing a loaded SavedModel (trainer.export) serves. Exports older than a stored
    setting get the one they served with: a centre crop, no margin, the serving limits."""
    stored = {}
    for name in ("image_size", "resize", "margin", "max_pixels", "max_aspect_ratio"):
        if hasattr(loaded, name):
            value = getattr(loaded, name).numpy()
            stored[name] = value.decode("utf-8") if isinstance(value, bytes) else value.item()
    return Framing.from_dict(stored, "the SavedModel's framing variables").served()
