"""Training-time image augmentation: one frozen config and pure, seeded TensorFlow functions.

Images are float32 0..255. Every random number comes from stateless ops keyed by an explicit
``seed`` (shape [2] int), so a seed gives the same pixels eagerly, in tf.data and on any machine:
what makes ``--deterministic`` runs repeat. Not Keras augmentation layers, which were much slower
inside tf.data (bench.input_throughput): the geometric part (flip included) is ONE bilinear
resampling per image (``warp_bilinear``) and the colour part one add, one blend and one 3x3
matrix, vectorised over the batch and compiled by XLA. Each image's parameters are one fixed row
of uniforms (``_COLUMNS``): switching an op off never changes the others' randomness, and
``AugmentConfig.none()`` is exactly the identity.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

FILL_MODES = ("reflect", "constant", "nearest", "wrap")

# One column of uniforms in [0, 1) per random quantity of an image.
_COLUMNS = ("flip", "angle", "zoom", "shift_x", "shift_y", "brightness", "contrast", "saturation",
            "hue", "erase", "erase_area", "erase_aspect", "erase_y", "erase_x")
_COL = {name: i for i, name in enumerate(_COLUMNS)}

# RGB <-> YIQ. Hue is a rotation of the (I, Q) chroma plane and saturation a scaling of it, so the
# two together are one 3x3 matrix per image (the approach of NVIDIA DALI's colour twist) instead
# of an RGB -> HSV -> RGB round trip per pixel. It approximates tf.image.adjust_hue's HSV shift.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], dtype=np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)

_MIN_ERASE_AREA = 0.02          # Zhong et al. 2017 (random erasing): s_l = 0.02
_ERASE_ASPECT = (0.3, 1 / 0.3)  # r_1 = 0.3, r_2 = 1 / r_1


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Magnitudes of each augmentation, each drawn uniformly in [-x, x] (or [1 - x, 1 + x] for
    factors); 0 (or False) switches an op off."""

    flip: bool = True  # horizontal, probability 0.5 (faces are left-right symmetric)
    max_shift: float = 0.0  # translation, a fraction of the image side
    max_zoom: float = 0.0  # scale factor around 1 (> 1 zooms in)
    max_rotation: float = 0.0  # degrees
    brightness: float = 0.0  # added delta, a fraction of 255
    contrast: float = 0.0  # factor around 1
    saturation: float = 0.0  # factor around 1
    hue: float = 0.0  # rotation, a fraction of the full hue circle (<= 0.5)
    erasing_probability: float = 0.0  # chance of one random rectangle replaced with noise
    erasing_max_area: float = 0.25  # its largest area, a fraction of the image (smallest 0.02)
    fill_mode: str = "reflect"  # pixels moved in from outside by shift/zoom/rotation

    def __post_init__(self):
        def check(name, low, high, high_open=False):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = number and (low <= value < high if high_open else low <= value <= high)
            if not ok:  # NaN fails both comparisons, so it lands here too
                bracket = ")" if high_open else "]"
                raise ValueError(
                    f"AugmentConfig.{name}={value!r} must be a number in [{low}, {high}{bracket}")

        check("max_shift", 0.0, 0.5)
        check("max_zoom", 0.0, 1.0, high_open=True)  # a scale of 0 would be a singular transform
        check("max_rotation", 0.0, 180.0)
        check("brightness", 0.0, 1.0)
        check("contrast", 0.0, 1.0)
        check("saturation", 0.0, 1.0)
        check("hue", 0.0, 0.5)
        check("erasing_probability", 0.0, 1.0)
        check("erasing_max_area", _MIN_ERASE_AREA, 1.0)
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"AugmentConfig.fill_mode={self.fill_mode!r} must be one of "
                             f"{FILL_MODES}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all: augment_* return their input unchanged."""
        return cls(flip=False)

    @classmethod
    def default(cls) -> AugmentConfig:
        """Mild, face-preserving augmentation: aligned crops only need small geometric jitter."""
        return cls(flip=True, max_shift=0.05, max_zoom=0.1, max_rotation=10.0, brightness=0.15,
                   contrast=0.2, saturation=0.2, hue=0.02, erasing_probability=0.0)

    @property
    def geometric(self) -> bool:
        return self.max_shift > 0 or self.max_zoom > 0 or self.max_rotation > 0

    @property
    def is_identity(self) -> bool:
        return not (self.flip or self.geometric or self.brightness or self.contrast
                    or self.saturation or self.hue or self.erasing_probability)


def augment_image(image, seed, config: AugmentConfig):
    """Augments one image [H, W, 3] (uint8, or float32 in 0..255) -> float32 [H, W, 3] in 0..255."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"augment_image expects one image [H, W, 3], got shape {image.shape}")
    return augment_batch(image[tf.newaxis], seed, config)[0]


def augment_batch(images, seed, config: AugmentConfig):
    """Augments a batch [B, H, W, 3], each image with its own random parameters.

    images: uint8, or float32 in 0..255. Returns float32 in 0..255, same shape.
    seed: int32/int64 tensor of shape [2]; the same seed gives the same result.
    Per batch, not per image, is the fast way to call this: each op here costs a few microseconds
    of dispatch however small its input, and there are a few dozen of them.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"augment_batch expects images [B, H, W, 3], got shape {images.shape}")
    if images.dtype not in (tf.uint8, tf.float32):
        raise TypeError(f"augment_batch expects uint8 or float32 (0..255) images, got "
                        f"{images.dtype}")
    if config.is_identity:
        return tf.cast(images, tf.float32)
    return _augment(images, tf.cast(tf.convert_to_tensor(seed), tf.int64), config)


# XLA fuses the per-pixel arithmetic of the warp's gathers and the colour map into a few loops:
# measured on 2 cores at 96 px, the whole augmentation went from 0.49 to ~0.1 CPU-ms per image
# (TF's ImageProjectiveTransformV3 kernel alone took 0.37). Compiled once per batch shape.
@tf.function(jit_compile=True)
def _augment(images, seed, config: AugmentConfig):
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    u = tf.random.stateless_uniform([shape[0], len(_COLUMNS)], seed=seed)
    col = lambda name: u[:, _COL[name]]
    sym = lambda name, magnitude: (2.0 * col(name) - 1.0) * magnitude  # uniform in [-m, m]

    flip = col("flip") < 0.5 if config.flip else tf.zeros_like(col("flip"), tf.bool)
    if config.geometric:
        # The flip rides along in the same resampling: one pass over the pixels instead of two.
        images = _affine(images, flip=flip, angle=sym("angle", math.radians(config.max_rotation)),
                         scale=1.0 + sym("zoom", config.max_zoom),
                         shift_x=sym("shift_x", config.max_shift),
                         shift_y=sym("shift_y", config.max_shift), fill_mode=config.fill_mode)
    elif config.flip:
        images = tf.where(tf.reshape(flip, [-1, 1, 1, 1]), tf.reverse(images, axis=[2]), images)
    if config.brightness or config.contrast or config.saturation or config.hue:
        images = _colour(images, brightness=sym("brightness", config.brightness * 255.0),
                         contrast=1.0 + sym("contrast", config.contrast),
                         saturation=1.0 + sym("saturation", config.saturation),
                         hue_angle=sym("hue", config.hue * 2.0 * math.pi),
                         need_mean=bool(config.contrast))
    if config.erasing_probability:
        images = _erase(images, u, config, tf.random.experimental.stateless_fold_in(seed, 1))
    # Fused bilinear weights can sum to a hair over 1 (255.00002): keep the 0..255 contract.
    return tf.clip_by_value(images, 0.0, 255.0)


def _affine(images, flip, angle, scale, shift_x, shift_y, fill_mode):
    """Flip, rotation and zoom about the centre, then a shift: ONE bilinear resampling per image.

    ImageProjectiveTransformV3 maps each OUTPUT pixel to the INPUT point it samples:
    in = c + R(angle) F (out - c) / scale - shift * size, with c the centre pixel and
    F = diag(-1, 1) for a flipped image (exactly tf.image.flip_left_right when nothing else moves).
    """
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    mirror = tf.where(flip, -1.0, 1.0)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1, b0, b1 = cos * mirror, -sin, sin * mirror, cos
    a2 = cx - a0 * cx - a1 * cy - shift_x * width
    b2 = cy - b0 * cx - b1 * cy - shift_y * height
    return warp_bilinear(images, tf.stack([a0, a1, a2, b0, b1, b2], axis=1), fill_mode)


def warp_bilinear(images, transforms, fill_mode: str):
    """What ImageProjectiveTransformV3 computes for affine ``transforms`` [B, 6], BILINEAR, fill 0.

    Output pixel (x, y) samples input point (a0 x + a1 y + a2, b0 x + b1 y + b2), mapped into the
    image by the fill mode exactly as TF's kernel does (image_ops.h, MapCoordinate), then blends
    its four neighbours, a neighbour outside the image counting as 0. Written as four gathers so
    that XLA can fuse it: TF's own kernel redoes the coordinate arithmetic for every channel and
    cannot be compiled. tests/test_augment.py checks it against the kernel for every fill mode.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    ys, xs = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")  # [H, W] output pixels
    t = [transforms[:, i, tf.newaxis, tf.newaxis] for i in range(6)]
    x = _map_coordinate(t[0] * xs + t[1] * ys + t[2], w, fill_mode)  # [B, H, W]
    y = _map_coordinate(t[3] * xs + t[4] * ys + t[5], h, fill_mode)
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = x - x0, y - y0
    flat = tf.reshape(images, [batch, height * width, 3])

    def corner(dx, dy, weight):
        cx, cy = x0 + dx, y0 + dy
        inside = (cx >= 0.0) & (cx < w) & (cy >= 0.0) & (cy < h)
        index = (tf.cast(tf.clip_by_value(cy, 0.0, h - 1.0), tf.int32) * width
                 + tf.cast(tf.clip_by_value(cx, 0.0, w - 1.0), tf.int32))
        weight = tf.where(inside, weight, 0.0)
        values = tf.gather(flat, tf.reshape(index, [batch, -1]), batch_dims=1)
        return tf.reshape(weight, [batch, -1, 1]) * values

    out = (corner(0.0, 0.0, (1.0 - fx) * (1.0 - fy)) + corner(1.0, 0.0, fx * (1.0 - fy))
           + corner(0.0, 1.0, (1.0 - fx) * fy) + corner(1.0, 1.0, fx * fy))
    return tf.reshape(out, shape)


def _map_coordinate(coord, length, fill_mode: str):
    """One axis of TF's MapCoordinate: an input coordinate outside [0, length - 1] -> inside."""
    if fill_mode == "constant":
        return coord  # out-of-image neighbours read the fill value instead
    if fill_mode == "nearest":
        return tf.clip_by_value(coord, 0.0, length - 1.0)
    if fill_mode == "reflect":  # dcba|abcd|dcba
        period = 2.0 * length
        below = coord + period * tf.floor(-coord / period)  # C++ truncation of a positive ratio
        below = tf.where(below < -length, below + period, -below - 1.0)
        above = coord - period * tf.floor(coord / period)
        above = tf.where(above >= length, period - above - 1.0, above)
    else:  # wrap: abcd|abcd|abcd
        below = coord + length * (tf.floor(-coord / (length - 1.0)) + 1.0)
        above = coord - length * tf.floor(coord / (length - 1.0))
    mapped = tf.where(coord < 0.0, below, tf.where(coord > length - 1.0, above, coord))
    mapped = tf.where(length <= 1.0, 0.0, mapped)  # a 1-pixel axis: everything maps to it
    return tf.clip_by_value(mapped, 0.0, length - 1.0)


def _colour(images, brightness, contrast, saturation, hue_angle, need_mean):
    """Brightness, contrast, saturation and hue as ONE affine map per image, then a clip.

    In sequence: x1 = x + d; x2 = f (x1 - m1) + m1 with m1 = mean(x1) = m + d per channel;
    x3 = C x2 (C: the chroma matrix). Expanded, x3 = f C x + C (d + (1 - f) m): one 3x3 matmul and
    one add over the pixels instead of four passes.
    """
    chroma = _chroma_matrix(saturation, hue_angle)  # C, [B, 3, 3]
    offset = tf.broadcast_to(brightness[:, None], tf.shape(chroma)[:2])  # d per channel, [B, 3]
    if need_mean:
        offset += (1.0 - contrast[:, None]) * tf.reduce_mean(images, axis=[1, 2])  # (1 - f) m
    bias = tf.einsum("bdc,bc->bd", chroma, offset)
    images = tf.einsum("bhwc,bdc->bhwd", images, chroma * contrast[:, None, None])
    images += bias[:, None, None, :]
    return tf.clip_by_value(images, 0.0, 255.0)


def _chroma_matrix(saturation, hue_angle):
    """Per-image 3x3 RGB matrices [B, 3, 3]: scale chroma by `saturation`, rotate it by `hue`."""
    cos, sin = tf.cos(hue_angle) * saturation, tf.sin(hue_angle) * saturation
    one, zero = tf.ones_like(cos), tf.zeros_like(cos)
    yiq = tf.stack([tf.stack([one, zero, zero], -1),
                    tf.stack([zero, cos, -sin], -1),
                    tf.stack([zero, sin, cos], -1)], axis=1)  # [B, 3, 3] acting on (Y, I, Q)
    to_yiq = tf.constant(_RGB_TO_YIQ, tf.float32)
    to_rgb = tf.constant(_YIQ_TO_RGB, tf.float32)
    return tf.einsum("ij,bjk,kl->bil", to_rgb, yiq, to_yiq)


def _erase(images, u, config: AugmentConfig, noise_seed):
    """Random erasing (Zhong et al. 2017): a random rectangle becomes uniform noise."""
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    area = _MIN_ERASE_AREA + u[:, _COL["erase_area"]] * (config.erasing_max_area - _MIN_ERASE_AREA)
    log_lo, log_hi = math.log(_ERASE_ASPECT[0]), math.log(_ERASE_ASPECT[1])
    aspect = tf.exp(log_lo + u[:, _COL["erase_aspect"]] * (log_hi - log_lo))
    box_h = tf.minimum(tf.sqrt(area * aspect) * height, height)
    box_w = tf.minimum(tf.sqrt(area / aspect) * width, width)
    top = u[:, _COL["erase_y"]] * (height - box_h)
    left = u[:, _COL["erase_x"]] * (width - box_w)
    rows = tf.range(height)[tf.newaxis, :]
    cols = tf.range(width)[tf.newaxis, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])    # [B, H]
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])  # [B, W]
    chosen = u[:, _COL["erase"]] < config.erasing_probability            # [B]
    mask = (in_rows[:, :, None] & in_cols[:, None, :]) & chosen[:, None, None]
    noise = tf.random.stateless_uniform(shape, seed=noise_seed, maxval=255.0)
    return tf.where(mask[..., tf.newaxis], noise, images)
