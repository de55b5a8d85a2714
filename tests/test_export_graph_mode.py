"""The export through TensorFlow Serving's own loader (TF1 session, fresh graph), and the
in-graph size check that refuses hostile images before any decode.

Keras 3 models tracked as such export variables the TF1 loader never restores ("Could not find
variable ..."); these tests run every signature through the session and compare with eager.
"""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contract import limits
from contract.framing import Framing
from deploy.serving_runtime_check import (
    BACKBONES,
    HEADS,
    HOSTILE,
    IMAGE_SIZE,
    MAX_AGE,
    flat_png,
    run_eager,
    run_v1,
    sample_inputs,
)
from trainer import export, framing
from trainer.model import build_model


def _export(tmp_path, backbone, head, **framing_kwargs):
    model = build_model(backbone=backbone, image_size=IMAGE_SIZE, head=head, max_age=MAX_AGE,
                        weights="none", initial_age=10.0)
    return export.export_saved_model(model, str(tmp_path / f"{backbone}_{head}"),
                                     Framing(IMAGE_SIZE, **framing_kwargs), head, MAX_AGE)


def _assert_both_loaders_agree(path, head, max_age=MAX_AGE):
    loaded = tf.saved_model.load(path)
    for signature, feed in sample_inputs().items():
        eager = run_eager(loaded, signature, feed)
        graph = run_v1(path, signature, feed)
        names = {"age", "age_distribution", "age_std"} if head == "dex" else {"age"}
        assert set(eager) == set(graph) == names, signature
        assert eager["age"].shape == (2,)
        for name in names:
            np.testing.assert_array_equal(graph[name], eager[name], err_msg=signature)
        if head == "dex":  # the spread of the very distribution served beside it
            probs, ages = eager["age_distribution"], np.arange(max_age + 1)
            mean = (probs * ages).sum(-1, keepdims=True)
            std = np.sqrt((probs * (ages - mean) ** 2).sum(-1))
            assert eager["age_std"].shape == (2,) and np.all(std > 0), signature
            np.testing.assert_allclose(eager["age_std"], std, rtol=1e-4, err_msg=signature)
    return loaded


FAST = [("tiny", "regression"), ("tiny", "dex"), ("mobilenet_v3_small", "regression")]


@pytest.mark.parametrize("backbone, head", FAST)
def test_tf_serving_loader_serves_what_eager_serves(tmp_path, backbone, head):
    path = _export(tmp_path, backbone, head, resize="pad", margin=0.1)
    loaded = _assert_both_loaders_agree(path, head)
    # What predict.py, evaluate.py and framing.read_framing read after an eager load.
    # The served pixel limit: the records' default, capped at what a shared server decodes.
    assert framing.read_framing(loaded) == Framing(IMAGE_SIZE, "pad", 0.1,
                                                   limits.SERVING_MAX_PIXELS)
    assert int(loaded.max_age.numpy()) == MAX_AGE


# Every other backbone once, alternating heads: the head adds one Dense layer, which FAST covers.
# FACE_AGE_EXHAUSTIVE=1 runs every pair (so does `make check-serving`, on TF 2.15 too).
_OTHERS = [(b, h) for b in BACKBONES for h in HEADS if (b, h) not in FAST]
_EVERY = os.environ.get("FACE_AGE_EXHAUSTIVE") == "1"


@pytest.mark.slow
@pytest.mark.parametrize("backbone, head", _OTHERS if _EVERY else [
    pairs[i % len(pairs)] for i, pairs in enumerate(
        [[(b, h) for b, h in _OTHERS if b == name] for name in sorted({b for b, _ in _OTHERS})])])
def test_tf_serving_loader_every_backbone(tmp_path, backbone, head):
    _assert_both_loaders_agree(_export(tmp_path, backbone, head), head)


def test_an_export_the_trainer_made_loads_in_the_serving_loader(tmp_path):
    """As trained: trainer.train.run under its CPU strategy (TensorFlow's default one), with the
    weights' moving average swapped in, exports what the TF1 session loader serves as eager."""
    from contract import stats as stats_file
    from preprocessing.fake_records import write_dataset
    from trainer import train
    from trainer.config import Config

    data_dir = write_dataset(tmp_path / "data", image_size=IMAGE_SIZE,
                             counts={"train": 16, "validation": 8})
    config = Config(data_dir=data_dir, model_dir=str(tmp_path / "m"), backbone="tiny",
                    weights="none", head="dex", batch_size=8, epochs=2, freeze_epochs=0,
                    steps_per_epoch=2, ema_momentum=0.5, verbose=0)
    metrics = train.run(config)  # max_age: the data's (stats.json), which covers every age
    assert np.isfinite(metrics["val_mae"])
    _assert_both_loaders_agree(str(tmp_path / "m" / "saved_model"), "dex",
                               max_age=int(stats_file.read(data_dir).max_age))


def test_the_checkpoint_holds_each_weight_once(tmp_path):
    path = _export(tmp_path, "tiny", "regression")
    model = build_model(backbone="tiny", image_size=IMAGE_SIZE, head="regression",
                        max_age=MAX_AGE)
    # Every weight but the dropout's seed state, which inference never reads.
    weights = [v for v in model.variables if "seed_generator" not in v.path]
    keys = [k for k, _ in tf.train.list_variables(path + "/variables/variables")]
    assert len([k for k in keys if k.startswith("model_variables/")]) == len(weights)
    assert not [k for k in keys if k.startswith("model/")]  # no second, Keras-tracked copy


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("sm"), "tiny", "dex",
                   max_pixels=1_000_000)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pngs_are_refused_before_decoding_by_both_loaders(tiny_export, name):
    width, height = HOSTILE[name]
    data = flat_png(width, height)
    assert len(data) < 70_000
    limit = "max_aspect_ratio 10" if "strip" in name else "max_pixels 1000000"
    feed = {"image_bytes": np.array([data], dtype=object)}
    loaded = tf.saved_model.load(tiny_export)
    for run in (lambda: run_eager(loaded, "serving_default", feed),
                lambda: run_v1(tiny_export, "serving_default", feed)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"{width}x{height}.*{limit}"):
            run()


def test_limits_edges_and_formats(tiny_export):
    loaded = tf.saved_model.load(tiny_export)

    def serve(data):
        return run_eager(loaded, "serving_default",
                         {"image_bytes": np.array([data], dtype=object)})["age"]

    assert serve(flat_png(1000, 1000)).shape == (1,)  # exactly max_pixels
    assert serve(flat_png(100, 10)).shape == (1,)  # exactly max_aspect_ratio
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"1001x1000 = 1001000 pixels"):
        serve(flat_png(1001, 1000))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"101x10 has aspect ratio 10.1"):
        serve(flat_png(101, 10))
    for fmt in ("JPEG", "BMP"):  # the other formats' headers are read too
        buf = io.BytesIO()
        Image.new("RGB", (400, 20), (90, 90, 90)).save(buf, fmt)
        with pytest.raises(tf.errors.InvalidArgumentError, match="400x20 has aspect ratio 20"):
            serve(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (40, 40)).save(buf, "GIF")  # the screen size does not bound its frames
    for data in (buf.getvalue(), b"not an image", b""):
        with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG, PNG or BMP"):
            serve(data)
    # predict_images checks the aspect ratio of the tensors it is given (its resize would grow).
    with pytest.raises(tf.errors.InvalidArgumentError, match="images: 2x40 has aspect ratio"):
        run_eager(loaded, "predict_images", {"images": np.zeros((1, 40, 2, 3), np.float32)})


def test_normal_faces_are_served_unchanged(tiny_export):
    """The check only gates: a face's age equals the model on the same framed pixels."""
    faces = [np.asarray(Image.radial_gradient("L").resize((w, h)).convert("RGB"))
             for w, h in ((60, 80), (120, 90))]
    data = [tf.io.encode_png(f).numpy() for f in faces]
    loaded = tf.saved_model.load(tiny_export)
    served = run_eager(loaded, "serving_default", {"image_bytes": np.array(data, dtype=object)})
    framed = np.stack([framing.decode_and_frame(d, Framing(IMAGE_SIZE)).numpy() for d in data])
    direct = run_eager(loaded, "predict_images", {"images": framed})
    np.testing.assert_allclose(served["age"], direct["age"], rtol=1e-6)


def test_declared_size_reads_every_header_without_decoding():
    for fmt in ("JPEG", "PNG", "GIF", "BMP"):
        buf = io.BytesIO()
        Image.new("RGB", (37, 21)).save(buf, fmt)
        assert framing.declared_size(buf.getvalue()).numpy().tolist() == [37, 21], fmt
    assert framing.declared_size(flat_png(1, 100_000)).numpy().tolist() == [1, 100_000]
    assert framing.declared_size(b"\x89PNG").numpy().tolist() == [0, 0]  # truncated
