"""trainer.augment: every op eagerly and inside tf.data, identities, flips, seeds, validation."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from trainer import augment
from trainer.augment import AugmentConfig, augment_batch, augment_image

SIZE = 32
SEED = tf.constant([3, 7], tf.int64)

# One config per op, everything else off, so each op is exercised on its own.
SINGLE_OPS = {
    "flip": AugmentConfig(flip=True),
    "shift": AugmentConfig(flip=False, max_shift=0.2),
    "zoom": AugmentConfig(flip=False, max_zoom=0.3),
    "rotation": AugmentConfig(flip=False, max_rotation=30.0),
    "brightness": AugmentConfig(flip=False, brightness=0.3),
    "contrast": AugmentConfig(flip=False, contrast=0.5),
    "saturation": AugmentConfig(flip=False, saturation=0.5),
    "hue": AugmentConfig(flip=False, hue=0.2),
    "erasing": AugmentConfig(flip=False, erasing_probability=1.0),
    "default": AugmentConfig.default(),
}


def _image(seed=0, size=SIZE):
    """A smooth, asymmetric colour image (float32, 0..255): every op visibly changes it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    base = np.stack([255 * xx, 255 * yy, 128 + 100 * np.sin(6 * xx * yy)], axis=-1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.float32)


@pytest.mark.parametrize("name", sorted(SINGLE_OPS))
def test_op_same_eagerly_and_in_tf_data_keeps_shape_dtype_range(name):
    config = SINGLE_OPS[name]
    image = _image()
    eager = augment_image(image, SEED, config).numpy()
    ds = tf.data.Dataset.from_tensors(image).map(lambda x: augment_image(x, SEED, config))
    in_pipeline = next(iter(ds)).numpy()
    np.testing.assert_allclose(in_pipeline, eager, atol=1e-3)
    assert eager.shape == image.shape and eager.dtype == np.float32
    assert eager.min() >= 0.0 and eager.max() <= 255.0
    # The op really does something for at least one of a few seeds (flip is a coin toss).
    changed = [np.abs(augment_image(image, [s, 1], config).numpy() - image).max() > 1.0
               for s in range(6)]
    assert any(changed), f"{name} never changed the image"


@pytest.mark.parametrize("name", sorted(SINGLE_OPS))
def test_batch_same_eagerly_and_in_tf_data(name):
    config = SINGLE_OPS[name]
    batch = np.stack([_image(i) for i in range(4)]).astype(np.uint8)
    eager = augment_batch(batch, SEED, config).numpy()
    ds = tf.data.Dataset.from_tensors(batch).map(lambda x: augment_batch(x, SEED, config))
    np.testing.assert_allclose(next(iter(ds)).numpy(), eager, atol=1e-3)
    assert eager.shape == batch.shape and eager.dtype == np.float32


def test_zero_magnitudes_are_exactly_the_identity():
    image = _image()
    for config in (AugmentConfig.none(), AugmentConfig(flip=False, max_zoom=0.0, hue=0.0)):
        assert config.is_identity
        np.testing.assert_array_equal(augment_image(image, SEED, config).numpy(), image)
    # uint8 in, float32 out, same values
    out = augment_image(image.astype(np.uint8), SEED, AugmentConfig.none())
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), image.astype(np.uint8).astype(np.float32))


@pytest.mark.parametrize("config", [AugmentConfig(flip=True),
                                    AugmentConfig(flip=True, max_zoom=1e-9)],
                         ids=["flip_alone", "flip_in_the_affine_resampling"])
def test_flip_really_flips(config):
    image = _image()
    flipped = tf.image.flip_left_right(image).numpy()
    outcomes = set()
    for s in range(12):
        out = augment_image(image, [s, 0], config).numpy()
        if np.allclose(out, flipped, atol=1e-2):
            outcomes.add("flipped")
        elif np.allclose(out, image, atol=1e-2):
            outcomes.add("same")
        else:
            pytest.fail(f"seed {s}: neither the image nor its mirror image")
    assert outcomes == {"flipped", "same"}


def test_affine_moves_pixels_where_the_matrix_says():
    image = _image()[None]
    zero = tf.zeros([1])
    no = tf.constant([False])
    # Identity transform: exact.
    same = augment._affine(image, no, zero, tf.ones([1]), zero, zero, "constant")
    np.testing.assert_allclose(same.numpy(), image, atol=1e-4)
    # A shift of 2 px to the right: column x of the output is column x - 2 of the input.
    shifted = augment._affine(image, no, zero, tf.ones([1]), tf.constant([2.0 / SIZE]), zero,
                              "constant").numpy()
    np.testing.assert_allclose(shifted[0, :, 2:], image[0, :, :-2], atol=1e-3)
    assert np.all(shifted[0, :, :2] == 0.0)  # moved in from outside: the constant fill
    # A quarter turn of a square image is a lossless rotation.
    quarter = augment._affine(image, no, tf.constant([math.pi / 2]), tf.ones([1]), zero, zero,
                              "constant").numpy()[0]
    candidates = [np.rot90(image[0], k, axes=(0, 1)) for k in (1, 3)]
    assert min(np.abs(quarter - c).max() for c in candidates) < 1e-2
    # Zooming in by 2 about the centre magnifies the centre: the corners come from inside.
    zoomed = augment._affine(image, no, zero, tf.constant([2.0]), zero, zero, "constant").numpy()
    centre = image[0, SIZE // 4:3 * SIZE // 4, SIZE // 4:3 * SIZE // 4]
    big = tf.image.resize(centre[None], [SIZE, SIZE]).numpy()[0]
    assert np.abs(zoomed[0] - big).mean() < 8.0


@pytest.mark.parametrize("fill_mode", augment.FILL_MODES)
@pytest.mark.parametrize("jit", [False, True])
def test_warp_bilinear_is_tfs_projective_transform_kernel(fill_mode, jit):
    # The kernel is the reference; shifts up to 3 image sides exercise every fill-mode branch.
    rng = np.random.default_rng(1)
    images = np.stack([_image(i, size=24)[:, :20] for i in range(6)])  # H != W
    angle, scale = rng.uniform(-0.6, 0.6, 6), rng.uniform(0.5, 1.5, 6)
    mirror = rng.choice([-1.0, 1.0], 6)
    a0, a1 = np.cos(angle) / scale * mirror, -np.sin(angle) / scale
    b0, b1 = np.sin(angle) / scale * mirror, np.cos(angle) / scale
    shifts = rng.uniform(-60.0, 60.0, (6, 2))
    shifts[0] = 0.0  # one pure rotation/zoom about the origin
    transforms = np.stack([a0, a1, shifts[:, 0], b0, b1, shifts[:, 1]], 1).astype(np.float32)
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=np.pad(transforms, [(0, 0), (0, 2)]),
        output_shape=[24, 20], fill_value=0.0, interpolation="BILINEAR",
        fill_mode=fill_mode.upper()).numpy()
    warp = tf.function(augment.warp_bilinear, jit_compile=True) if jit else augment.warp_bilinear
    got = warp(tf.constant(images), tf.constant(transforms), fill_mode).numpy()
    np.testing.assert_allclose(got, expected, atol=0.02)  # 0..255 values; XLA fuses mul-adds


def test_colour_matrix_saturation_and_hue():
    one = tf.ones([1])
    identity = augment._chroma_matrix(one, tf.zeros([1])).numpy()[0]
    np.testing.assert_allclose(identity, np.eye(3), atol=1e-5)
    full_turn = augment._chroma_matrix(one, tf.constant([2 * math.pi])).numpy()[0]
    np.testing.assert_allclose(full_turn, np.eye(3), atol=1e-5)
    grey = augment._colour(tf.constant(_image()[None]), brightness=tf.zeros([1]),
                           contrast=one, saturation=tf.zeros([1]), hue_angle=tf.zeros([1]),
                           need_mean=False).numpy()[0]
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-3)  # no chroma left
    np.testing.assert_allclose(grey[..., 1], grey[..., 2], atol=1e-3)


def test_brightness_and_contrast_move_the_mean_and_spread_as_configured():
    image = np.full([1, SIZE, SIZE, 3], 100.0, np.float32)
    image[:, :, : SIZE // 2] = 60.0
    out = augment._colour(tf.constant(image), brightness=tf.constant([20.0]),
                          contrast=tf.constant([1.5]), saturation=tf.ones([1]),
                          hue_angle=tf.zeros([1]), need_mean=True).numpy()
    # brightness first (+20), then contrast about the (shifted) mean 100: 80 -> 70, 120 -> 130
    np.testing.assert_allclose(out[0, 0, 0], [70.0] * 3, atol=1e-3)
    np.testing.assert_allclose(out[0, 0, -1], [130.0] * 3, atol=1e-3)


def test_random_erasing_replaces_one_rectangle_within_the_area_bounds():
    image = np.full([SIZE, SIZE, 3], 128.0, np.float32)
    config = AugmentConfig(flip=False, erasing_probability=1.0, erasing_max_area=0.3)
    for s in range(5):
        out = augment_image(image, [s, 2], config).numpy()
        erased = np.any(out != 128.0, axis=-1)
        rows, cols = np.nonzero(erased.any(axis=1))[0], np.nonzero(erased.any(axis=0))[0]
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 0.005 <= box / SIZE**2 <= 0.36, box / SIZE**2
        assert erased.sum() >= 0.9 * box  # a filled rectangle, not scattered pixels
    never = AugmentConfig(flip=False, erasing_probability=0.0)
    np.testing.assert_array_equal(augment_image(image, SEED, never).numpy(), image)


def test_seeds_repeat_and_differ_and_each_batch_image_gets_its_own_draw():
    config = AugmentConfig.default()
    image = _image()
    a = augment_image(image, [1, 2], config).numpy()
    np.testing.assert_array_equal(a, augment_image(image, [1, 2], config).numpy())
    assert np.abs(a - augment_image(image, [1, 3], config).numpy()).max() > 1.0
    batch = augment_batch(np.stack([image, image]), [1, 2], config).numpy()
    assert np.abs(batch[0] - batch[1]).max() > 1.0


def test_turning_one_op_on_leaves_the_others_draws_unchanged():
    image = _image()
    flip_only = augment_image(image, SEED, AugmentConfig(flip=True)).numpy()
    flip_and_erase = AugmentConfig(flip=True, erasing_probability=1.0, erasing_max_area=0.05)
    both = augment_image(image, SEED, flip_and_erase).numpy()
    untouched = np.all(both == flip_only, axis=-1)
    assert untouched.mean() > 0.9  # same flip decision; only the erased rectangle differs


@pytest.mark.parametrize("field, value", [("max_shift", 0.6), ("max_zoom", 1.0),
                                          ("max_rotation", -1.0), ("hue", 0.7),
                                          ("brightness", float("nan")), ("contrast", "0.2"),
                                          ("erasing_probability", 1.5), ("fill_mode", "mirror")])
def test_bad_magnitudes_are_clear_errors(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(AugmentConfig(), **{field: value})


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        augment_image(np.zeros([2, 8, 8, 3], np.float32), SEED, AugmentConfig.default())
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        augment_batch(np.zeros([2, 8, 8, 1], np.float32), SEED, AugmentConfig.default())
    with pytest.raises(TypeError, match="float64"):
        augment_batch(np.zeros([2, 8, 8, 3], np.float64), SEED, AugmentConfig.default())
