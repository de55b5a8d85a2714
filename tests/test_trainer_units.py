"""Trainer pieces without a training loop: config, weighting, schedule, losses, model stages."""

import dataclasses
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from contract.stats import Stats
from trainer import callbacks as cb
from trainer import config as config_lib
from trainer import distribution, losses, schedule, train, weighting
from trainer import model as model_lib
from trainer.config import Config


def _config(**kw):
    return Config(data_dir="/data", model_dir="/model", **kw)


@pytest.mark.parametrize("kw, flag", [
    ({"batch_size": 0}, "--batch_size=0"),
    ({"backbone": "vgg"}, "--backbone='vgg'"),
    ({"freeze_epochs": 5, "epochs": 3}, "--freeze_epochs=5"),
    ({"head": "dex", "loss": "mae"}, "--loss='mae'"),
    ({"unfreeze": "some"}, "--unfreeze='some'"),
    ({"fine_tune_learning_rate": -1.0}, "--fine_tune_learning_rate=-1.0"),
    ({"distribution_strategy": "tpu"}, "--tpu=''"),
    ({"image_size": 8}, "--image_size=8"),
    ({"image_size": 1025}, "--image_size=1025: expected an integer in 32..1024"),
    ({"sample_weighting": "lds", "lds_kernel_size": 4}, "--lds_kernel_size=4"),
])
def test_config_errors_name_the_flag(kw, flag):
    with pytest.raises(ValueError) as e:
        _config(**kw)
    assert str(e.value).startswith(flag)


def test_config_is_frozen_and_round_trips_json():
    c = _config(backbone="tiny", unfreeze="12")
    assert c.unfreeze_layers == 12 and c.loss_name == "mae"
    assert _config(head="dex").loss_name == "kl"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.batch_size = 3
    assert Config(**__import__("json").loads(c.to_json())) == c


def test_dirs_default_to_vertex_env_then_model_dir():
    env = {"AIP_MODEL_DIR": "gs://b/model/", "AIP_CHECKPOINT_DIR": "gs://b/ckpt",
           "AIP_TENSORBOARD_LOG_DIR": "gs://b/tb"}
    assert config_lib.resolve_dirs("", "", "", env) == ("gs://b/model", "gs://b/ckpt", "gs://b/tb")
    assert config_lib.resolve_dirs("/m", "", "", {}) == ("/m", "/m/checkpoints", "/m/tensorboard")
    with pytest.raises(ValueError, match="--model_dir"):
        config_lib.resolve_dirs("", "", "", {})
    flags = types.SimpleNamespace(**{**config_lib.defaults(), "data_dir": "/d", "model_dir": None})
    assert config_lib.from_flags(flags, env).checkpoint_dir == "gs://b/ckpt"


def test_weighting_math():
    hist = np.array([0, 10, 30, 0, 60], float)
    inv = weighting.age_weights(hist, "inverse_frequency", max_ratio=100)
    # 1/count, scaled so the mean over the 100 examples is 1.
    expected = np.array([0, 1 / 10, 1 / 30, 0, 1 / 60]) * 100 / 3.0
    np.testing.assert_allclose(inv[[1, 2, 4]], expected[[1, 2, 4]], rtol=1e-6)
    assert np.dot(inv, hist) / hist.sum() == pytest.approx(1.0)
    clipped = weighting.age_weights(hist, "inverse_frequency", max_ratio=2)
    assert clipped[1] / clipped[4] == pytest.approx(2.0)     # rarest capped at 2x commonest
    assert clipped[0] == pytest.approx(clipped[1])           # empty ages get the cap
    assert np.dot(clipped, hist) / hist.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(weighting.age_weights(hist, "none"), np.ones(5))


def test_lds_smooths_before_inverting():
    hist = np.zeros(41)
    hist[10:31] = 100.0
    hist[20] = 5.0  # a dip inside a dense region: LDS should barely up-weight it
    k = weighting.gaussian_kernel(9, 2.0)
    assert k.sum() == pytest.approx(1.0) and k[4] == k.max()
    smooth = weighting.smooth_histogram(hist, 9, 2.0)
    assert smooth[20] == pytest.approx(np.dot(hist[16:25], k))
    lds = weighting.age_weights(hist, "lds", kernel_size=9, sigma=2.0, max_ratio=10)
    inv = weighting.age_weights(hist, "inverse_frequency", max_ratio=10)
    assert lds[20] / lds[15] < 1.5 < inv[20] / inv[15]
    assert np.dot(lds, hist) / hist.sum() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="--sample_weighting"):
        weighting.age_weights(hist, "sqrt")


def test_lds_kernel_longer_than_the_histogram_is_zero_padded():
    """A kernel wider than the age range (a small --max_age, or a large --lds_kernel_size) is
    the same zero-padded smoothing as any other: the output keeps the histogram's length."""
    hist = np.array([0.0, 4.0, 1.0, 0.0, 7.0])
    for size in (9, 21):
        k, half = weighting.gaussian_kernel(size, 2.0), size // 2
        expected = [sum(hist[j] * k[i - j + half] for j in range(5)) for i in range(5)]
        np.testing.assert_allclose(weighting.smooth_histogram(hist, size, 2.0), expected,
                                   rtol=1e-12)
    weights = weighting.age_weights(hist, "lds", kernel_size=9, sigma=2.0)
    assert weights.shape == (5,) and np.dot(weights, hist) / hist.sum() == pytest.approx(1.0)


def test_initial_age_is_the_exact_train_mean():
    """The regression head starts at the train split's mean age: the recorded mean when
    stats.json has one, else the floor(age) histogram's (exact for integer ages)."""
    config = Config(data_dir="/d", model_dir="/m", batch_size=2)
    split = {"count": 4, "age_histogram": [0, 0, 2, 0, 2]}  # ages 2, 2, 4, 4
    stats = {"image_size": 32, "max_age": 4,
             "splits": {"train": split, "validation": {"count": 2}}}
    assert train.make_plan(config, Stats.from_dict(stats), 1).mean_age == pytest.approx(3.0)
    split["mean_age"] = 3.4  # e.g. ages 2.3, 2.5, 4.2, 4.6
    assert train.make_plan(config, Stats.from_dict(stats), 1).mean_age == pytest.approx(3.4)


def test_best_weights_helpers(tmp_path):
    """BestWeights keeps the lowest val_mae; read_best / restore_best / remove_best use it."""
    ckpt = str(tmp_path / "ckpt")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert cb.read_best(ckpt) == cb.NO_BEST and not cb.restore_best(model, ckpt)
    callback = cb.BestWeights(ckpt)
    callback.set_model(model)
    saved = model.get_weights()
    callback.on_epoch_end(0, {"val_mae": 5.0})
    model.set_weights([w + 1 for w in saved])
    callback.on_epoch_end(1, {"val_mae": 6.0})  # worse: not saved
    assert cb.read_best(ckpt) == {"value": 5.0, "epoch": 0}
    assert cb.restore_best(model, ckpt)
    np.testing.assert_array_equal(model.get_weights()[0], saved[0])
    cb.remove_best(ckpt)
    assert cb.read_best(ckpt) == cb.NO_BEST and not cb.restore_best(model, ckpt)
    cb.remove_best(ckpt)  # nothing to remove is fine


def test_schedule_warmup_then_cosine_to_zero():
    s = schedule.stage_schedule(1e-3, epochs=4, steps_per_epoch=10, warmup_epochs=1)
    values = [float(s(i)) for i in range(41)]
    assert values[0] == pytest.approx(1e-4) and values[9] == pytest.approx(1e-3)
    assert values[10] == pytest.approx(1e-3) and values[25] == pytest.approx(5e-4, rel=1e-4)
    assert values[40] == pytest.approx(0.0, abs=1e-9)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
    assert schedule.stage_schedule(1e-3, 1, 4, warmup_epochs=5).warmup_steps == 2  # capped


def test_losses():
    age = tf.constant([10.0, 30.0])
    pred = tf.constant([[12.0], [20.0]])
    np.testing.assert_allclose(losses.make_loss("mae", "regression")(age, pred), [2, 10])
    np.testing.assert_allclose(losses.make_loss("mse", "regression")(age, pred), [4, 100])
    huber = losses.make_loss("huber", "regression", huber_delta=5.0)(age, pred)
    np.testing.assert_allclose(huber, [2.0, 0.5 * 25 + 5 * 5])
    dist = losses.label_distribution(tf.constant([0.0, 5.0]), 11, sigma=1.0).numpy()
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=1e-6)
    assert dist[1].argmax() == 5 and dist[1, 4] == pytest.approx(dist[1, 6])
    kl = losses.make_loss("kl", "dex", num_classes=11, dex_sigma=1.0)
    assert float(kl(tf.constant([5.0]), tf.constant(dist[1:]))[0]) == pytest.approx(0, abs=1e-5)
    ce = losses.make_loss("ce", "dex", num_classes=11)
    one_hot = tf.one_hot([3], 11)
    assert float(ce(tf.constant([3.2]), one_hot)[0]) == pytest.approx(0, abs=1e-5)
    mae = losses.AgeMAE("dex")
    mae.update_state(tf.constant([4.0]), tf.constant([[0.0, 0, 0, 0.5, 0, 0.5, 0, 0, 0, 0, 0]]))
    assert float(mae.result()) == pytest.approx(0.0)


def _trainable_names(model):
    return {v.path for v in model.trainable_variables}


def test_trainable_variables_per_stage_tiny():
    m = model_lib.build_model(backbone="tiny", image_size=32, head="regression", max_age=100)
    head_vars = {"age/kernel", "age/bias"}
    model_lib.set_trainable(m, "tiny", "head")
    assert _trainable_names(m) == head_vars
    bn = m.get_layer("backbone").get_layer("block1_bn")
    assert not bn.trainable  # frozen BN runs in inference mode in Keras 3
    model_lib.set_trainable(m, "tiny", "fine_tune", "all")
    assert len(m.trainable_variables) == 2 + 3 + 3 * 2  # head + convs + BN gamma/beta
    model_lib.set_trainable(m, "tiny", "fine_tune", "last_block", train_bn=False)
    assert _trainable_names(m) == head_vars | {"block3_conv/kernel"}
    model_lib.set_trainable(m, "tiny", "fine_tune", 2)  # last 2 layers: block3 bn + relu
    assert _trainable_names(m) == head_vars | {"block3_bn/gamma", "block3_bn/beta"}


def test_mobilenet_last_block_bn_momentum_and_weights_file(tmp_path):
    m = model_lib.build_model(backbone="mobilenet_v3_small", image_size=32, head="dex",
                              max_age=20, bn_momentum=0.9)
    backbone = m.get_layer("backbone")
    bns = [la for la in backbone.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(la.momentum == 0.9 for la in bns)  # Keras ships 0.999
    model_lib.set_trainable(m, "mobilenet_v3_small", "fine_tune", "last_block")
    trained = {v.path.split("/")[0] for v in m.trainable_variables} - {"age_logits"}
    assert trained and all(n.startswith(("expanded_conv_10_", "conv_1")) for n in trained)
    assert m.output_shape == (None, 21)
    # --weights=PATH: a weights file of the backbone is loaded into a fresh model.
    path = str(tmp_path / "backbone.weights.h5")
    backbone.save_weights(path)
    fresh = model_lib.build_backbone("mobilenet_v3_small", 32, weights=path)
    np.testing.assert_array_equal(fresh.get_layer("conv").kernel.numpy(),
                                  backbone.get_layer("conv").kernel.numpy())
    with pytest.raises(FileNotFoundError, match="--weights="):
        model_lib.build_backbone("tiny", 32, weights=str(tmp_path / "missing.weights.h5"))


def test_minimalistic_mobilenet_has_no_squeeze_excite_or_hard_swish():
    """The backbone for int8 on phones and VNNI CPUs: ReLU only, no squeeze-excite, the same
    block names (so --unfreeze=last_block finds its last block)."""
    names = {}
    for backbone in ("mobilenet_v3_small", "mobilenet_v3_small_minimalistic"):
        m = model_lib.build_model(backbone=backbone, image_size=32, head="dex", max_age=20)
        layers = m.get_layer("backbone").layers
        names[backbone] = ({la.name for la in layers if "squeeze_excite" in la.name},
                           {la.name for la in layers if isinstance(la, keras.layers.Multiply)})
        model_lib.set_trainable(m, backbone, "fine_tune", "last_block")
        trained = {v.path.split("/")[0] for v in m.trainable_variables} - {"age_logits"}
        assert trained and all(n.startswith(("expanded_conv_10_", "conv_1")) for n in trained)
    squeeze, multiply = names["mobilenet_v3_small"]
    assert squeeze and multiply  # hard-swish is x * relu6(x + 3) / 6: a Multiply layer
    assert names["mobilenet_v3_small_minimalistic"] == (set(), set())


def test_tf_config_chief_rules():
    cluster = {"worker": ["a:1", "b:2"]}
    assert distribution.is_chief({})
    assert distribution.is_chief({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    assert not distribution.is_chief({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    with_chief = {"cluster": {**cluster, "chief": ["c:3"]}, "task": {"type": "worker",
                                                                     "index": 0}}
    assert not distribution.is_chief(with_chief)
    assert distribution.resolve_strategy_name("auto", "", with_chief, 0) == "multi_worker_mirrored"
    assert distribution.resolve_strategy_name("auto", "", {}, 2) == "mirrored"
    assert distribution.resolve_strategy_name("auto", "", {}, 0) == "one_device"
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribution.tf_config({"TF_CONFIG": "{nope"})


def test_a_dex_max_age_below_the_training_ages_is_a_clear_error(tmp_path):
    """It trained to NaN before: an age past the last class has no label mass."""
    from contract import stats as stats_file
    from preprocessing.fake_records import write_dataset

    data_dir = write_dataset(tmp_path, counts={"train": 16, "validation": 4})
    config = Config(data_dir=data_dir, model_dir=str(tmp_path / "m"), backbone="tiny",
                    head="dex", max_age=20, batch_size=8)
    with pytest.raises(ValueError, match=r"--max_age=20: the training split has ages up to"):
        train.make_plan(config, stats_file.read(data_dir), 1)
    train.make_plan(dataclasses.replace(config, head="regression"), stats_file.read(data_dir), 1)


def test_one_device_on_the_cpu_is_the_default_strategy():
    """Not OneDeviceStrategy("/cpu:0"): Keras's train step ran 2-3x slower under it."""
    import tensorflow as tf

    assert distribution.create_strategy("one_device") is tf.distribute.get_strategy()


def test_pad_to_steps_gives_exactly_that_many_full_batches_then_ends():
    images = tf.ones([5, 4, 4, 3])
    ds = tf.data.Dataset.from_tensor_slices((images, tf.range(5.0), tf.ones([5]))).batch(2)
    batches = list(train.pad_to_steps(ds, image_size=4, batch_size=2, steps=4))
    assert len(batches) == 4  # finite: a validation pass's iterator ends instead of prefetching
    ages = np.concatenate([b[1].numpy() for b in batches])
    weights = np.concatenate([b[2].numpy() for b in batches])
    assert ages[:5].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert weights.tolist() == [1.0] * 5 + [0.0] * 3  # padding never counts
    assert all(b[0].shape == (2, 4, 4, 3) for b in batches)
