"""trainer.framing: served photos are framed like preprocessing frames the training records.

The reference is preprocessing itself (images.fit / images.process on the same bytes), not a
re-statement of its geometry, so a change on either side fails here.
"""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contract.framing import Framing
from contract.stats import Stats
from imaging import images as pim
from trainer import export, framing, predict

SIZE = 32


def _photo(width, height, seed=0, alpha=False):
    """A non-square 'photo': gradients, hard-edged blocks, and a bright band in the top-left
    margin that only a correct trim removes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([60 + 120 * x / width, 40 + 150 * y / height,
                    100 + 50 * (x + y) / (width + height)], -1)
    for _ in range(4):
        x0, y0 = rng.integers(0, width - 12), rng.integers(0, height - 12)
        img[y0:y0 + rng.integers(6, 20), x0:x0 + rng.integers(6, 20)] = rng.integers(0, 256, 3)
    img[:, :round(width * 0.1)] = 250
    img[:round(height * 0.1)] = 250
    img += rng.normal(0, 3, img.shape)  # sensor noise, so the record's JPEG really is lossy
    if alpha:
        img = np.concatenate([img, (255 * x / width)[..., None]], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode(array, fmt="PNG", **kwargs):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _pil_framing(data, size, resize, margin):
    """preprocessing's own pixels before its JPEG encode: decode (with draft) -> RGB -> fit."""
    image = pim.decode(data, 10**8, draft_size=Framing(size, resize, margin).draft_size())
    return np.asarray(pim.fit(pim.to_rgb(image), size, resize, margin), np.float32)


@pytest.mark.parametrize("resize", ["crop", "pad"])
def test_frame_matches_preprocessing_eagerly_and_in_tf_function(resize):
    traced = tf.function(framing.decode_and_frame)
    cases = [(_encode(_photo(96, 64)), 32), (_encode(_photo(47, 81, 1), "JPEG", quality=95), 32),
             (_encode(_photo(400, 300, 2), "JPEG", quality=90), 48),  # PIL drafts at 1/4
             (_encode(_photo(90, 60, 3, alpha=True)), 32), (_encode(_photo(20, 30, 4)), 32)]
    for data, size in cases:
        for margin in (0.0, 0.1, 0.25):
            eager = framing.decode_and_frame(data, Framing(size, resize, margin)).numpy()
            graph = traced(tf.constant(data), Framing(size, resize, margin)).numpy()
            np.testing.assert_array_equal(eager, graph)
            assert eager.shape == (size, size, 3) and eager.dtype == np.float32
            # PIL rounds to 8 bits between its two resampling passes; TF keeps floats. A
            # geometry slip (one pixel of offset, a wrong pad side) moves the mean by several
            # levels on these hard-edged images, resampling alone by < 0.25 (measured).
            diff = np.abs(np.round(eager) - _pil_framing(data, size, resize, margin))
            assert diff.mean() < 0.5, (size, resize, margin, diff.mean())
            assert np.percentile(diff, 99) <= 1.0, (size, resize, margin)


def test_frame_geometry_on_flat_colours():
    # 50x30 with a red 5 px (x) / 3 px (y) border: margin 0.1 trims exactly the border.
    image = np.full((30, 50, 3), 255, np.uint8)
    image[:3], image[-3:], image[:, :5], image[:, -5:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), \
        (255, 0, 0)
    batch = tf.constant(np.stack([image, image]))  # [B, H, W, 3] works like [H, W, 3]
    np.testing.assert_allclose(framing.frame(batch, 20, "crop", 0.1), 255.0, atol=1e-3)
    pad = framing.frame(batch, 20, "pad", 0.1).numpy()  # 40x24 -> 20x12, centred: rows 4..15
    assert pad.shape == (2, 20, 20, 3)
    np.testing.assert_allclose(pad[:, 4:16], 255.0, atol=1e-3)
    np.testing.assert_array_equal(pad[:, :4], 0.0)
    np.testing.assert_array_equal(pad[:, 16:], 0.0)
    # Without a margin the red border is kept, as preprocessing keeps it.
    assert framing.frame(image, 20, "crop", 0.0).numpy()[0, 10, 1] < 50
    # A margin that would leave nothing is skipped, like images.fit does.
    tiny = np.full((2, 2, 3), 7, np.uint8)
    np.testing.assert_allclose(framing.frame(tiny, 4, "crop", 0.4), 7.0, atol=1e-3)


def test_bad_settings_are_named():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="resize='stretch'"):
        framing.frame(image, 8, "stretch")
    with pytest.raises(ValueError, match="margin=0.5"):
        framing.frame(image, 8, "crop", 0.5)
    with pytest.raises(ValueError, match="image_size=0"):
        framing.frame(image, 0)
    with pytest.raises(tf.errors.InvalidArgumentError):
        framing.decode_and_frame(b"not an image", Framing(8))


def _ramp_model():
    """age = 5 + 80 * (ramp-weighted mean pixel) / 255, fixed weights: heavier towards the
    bottom right, so a shift, a zoom or a misplaced pad bar all change the age."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    weights = np.repeat((1 + xx + 2 * yy)[..., None], 3, -1)
    weights = weights / weights.sum() * 80.0 / 255.0
    inputs = keras.Input((SIZE, SIZE, 3))
    dense = keras.layers.Dense(1)
    outputs = dense(keras.layers.Flatten()(inputs))
    dense.set_weights([weights.reshape(-1, 1), np.array([5.0])])
    return keras.Model(inputs, outputs)


# Served age vs the age of preprocessing's record of the same photo. Measured: 0.29 years at most
# over 90 such photos (3 aspect ratios x 30 seeds, per mode), and the same 0.29 when PIL's own
# uncompressed framing replaces TF's: the whole gap is the record's JPEG re-encoding (quality
# 90, 32 px, noisy pixels: ~6 levels mean absolute pixel error), not the serving geometry.
AGE_TOLERANCE = 0.5


@pytest.mark.parametrize("resize", ["crop", "pad"])
def test_served_bytes_equal_predict_images_on_the_record(tmp_path, resize):
    margin = 0.1
    model = _ramp_model()
    path = export.export_saved_model(model, str(tmp_path / "sm"), Framing(SIZE, resize, margin),
                                     "regression", max_age=120)
    loaded = tf.saved_model.load(path)
    assert framing.read_framing(loaded) == Framing(SIZE, resize, margin).served()
    raw = [_encode(_photo(96, 64, seed)) for seed in range(3)] + [_encode(_photo(60, 90, 7))]
    # The preprocessing pipeline's own records: the bytes its DoFn stores as image/encoded.
    records = [pim.process(r, pim.ImageConfig(Framing(SIZE, resize, margin)))
               for r in raw]
    record_pixels = np.stack([tf.io.decode_jpeg(r.jpeg).numpy() for r in records])

    served = loaded.signatures["serving_default"](image_bytes=tf.constant(raw))["age"].numpy()
    from_records = predict.predict_ages(loaded, record_pixels.astype(np.float32))
    np.testing.assert_allclose(served, from_records, atol=AGE_TOLERANCE)

    # predict.py's own decode path frames like serving_default.
    files = []
    for i, data in enumerate(raw):
        files.append(str(tmp_path / f"face{i}.png"))
        (tmp_path / f"face{i}.png").write_bytes(data)
    images, ok, errors = predict.read_images(files, Framing(SIZE, resize, margin))
    assert ok == files and not errors
    np.testing.assert_allclose(predict.predict_ages(loaded, images), served, atol=1e-3)

    # The test can tell: the old framing (centre crop, no margin) misses by far more.
    old = model(np.stack([framing.decode_and_frame(r, Framing(SIZE)).numpy() for r in raw]))
    assert np.abs(old.numpy().reshape(-1) - from_records).max() > 3 * AGE_TOLERANCE


def test_plan_carries_the_records_framing_to_the_export():
    from trainer import train
    from trainer.config import Config

    config = Config(data_dir="/d", model_dir="/m", batch_size=2)
    stats = {"image_size": 32, "max_age": 4,
             "splits": {"train": {"count": 4}, "validation": {"count": 2}}}
    # an output written before stats.json had them:
    plan = train.make_plan(config, Stats.from_dict(stats), 1)
    assert plan.framing == Framing(32, "crop", 0.0)
    plan = train.make_plan(config, Stats.from_dict({**stats, "resize": "pad", "margin": 0.1}), 1)
    assert plan.framing == Framing(32, "pad", 0.1)
    assert "pad, margin 0.1" in plan.describe()
    with pytest.raises(ValueError, match=r"stats.json in '/d': resize='fit'"):
        train.make_plan(config, Stats.from_dict({**stats, "resize": "fit"}), 1)


def test_an_older_savedmodel_reads_as_the_old_centre_crop():
    class Loaded:  # what tf.saved_model.load returns for an export without the variables
        image_size = tf.Variable(32)

    assert framing.read_framing(Loaded()) == Framing(32, "crop", 0.0).served()


def test_evaluate_reports_the_framing_and_a_mismatch(tmp_path):
    import json

    from contract import schema
    from trainer import evaluate

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tf.io.TFRecordWriter(str(data_dir / schema.shard_name("test", 0, 1))) as writer:
        for i in range(4):
            record = pim.process(_encode(_photo(96, 64, i)),
                                 pim.ImageConfig(Framing(SIZE, "pad", 0.1)))
            writer.write(schema.encode({
                schema.IMAGE: record.jpeg, schema.HEIGHT: SIZE, schema.WIDTH: SIZE,
                schema.ORIGINAL_HEIGHT: 64, schema.ORIGINAL_WIDTH: 96,
                schema.FILENAME: f"{i}.png", schema.AGE: 20.0 + i, schema.ID: str(i),
                schema.BLUR: record.blur, schema.BRIGHTNESS: record.brightness}))
    stats = {"image_size": SIZE, "max_age": 120, "extra_columns": [], "resize": "pad",
             "margin": 0.1, "splits": {"test": {"count": 4, "num_shards": 1,
                                                "age_histogram": [0] * 20 + [1] * 4}}}
    (data_dir / schema.STATS_FILE).write_text(json.dumps(stats))
    for resize, mismatch in (("pad", False), ("crop", True)):
        model = str(tmp_path / resize / "saved_model")
        export.export_saved_model(_ramp_model(), model, Framing(SIZE, resize, 0.1), "regression",
                                  max_age=120)
        result = evaluate.evaluate(model, str(data_dir), "test", str(tmp_path / f"out_{resize}"),
                                   worst=0)
        assert (result["resize"], result["margin"]) == (resize, 0.1)
        assert ("framing_mismatch" in result) == mismatch
