"""Precise BN: exact averages, the train/inference gap it closes, replicas, the trainer wiring."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from contract import stats as stats_file
from preprocessing.fake_records import write_dataset
from trainer import distribution, precise_bn, train
from trainer import model as model_lib
from trainer.config import Config


def _bright_batches(count, batch_size=8, size=32, seed=0):
    """Images far from zero mean, so the BN inputs' statistics are far from the (0, 1) init."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(100, 255, (batch_size, size, size, 3)).astype("float32")
            for _ in range(count)]


def test_moving_statistics_become_the_average_of_per_batch_statistics():
    keras.utils.set_random_seed(0)
    backbone = model_lib.build_backbone("tiny", 32)
    layers = precise_bn.training_bn_layers(backbone)
    assert [layer.name for layer in layers] == ["block1_bn", "block2_bn", "block3_bn"]
    batches = _bright_batches(5)
    # Every BN layer's input in a training-mode forward pass (earlier BN layers normalise with
    # the batch's statistics), and its per-channel batch mean and (biased) variance.
    probe = keras.Model(backbone.inputs, [layer.input for layer in layers])
    per_batch = [[(x.numpy().mean((0, 1, 2)), x.numpy().var((0, 1, 2)))
                  for x in probe([b], training=True)] for b in batches]
    momenta = [layer.momentum for layer in layers]

    count = precise_bn.recalibrate(backbone, tf.data.Dataset.from_tensor_slices(batches), 5)

    assert count == 3
    for i, layer in enumerate(layers):
        mean = np.mean([stats[i][0] for stats in per_batch], axis=0)
        variance = np.mean([stats[i][1] for stats in per_batch], axis=0)
        assert np.abs(mean).max() > 0.1  # far from the initial zeros: a real check
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-4)
    # The switches used while recalibrating are undone for the training step's next trace.
    assert [layer.momentum for layer in layers] == momenta
    assert not any(layer.synchronized for layer in layers)


def test_frozen_batchnorm_is_left_alone():
    model = model_lib.build_model(backbone="tiny", image_size=32, head="regression", max_age=20)
    model_lib.set_trainable(model, "tiny", "head")
    assert precise_bn.training_bn_layers(model) == []
    before = [w.numpy() for w in model.weights]
    assert precise_bn.recalibrate(model, [_bright_batches(1)[0]], 1) == 0
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights, strict=True))
    model_lib.set_trainable(model, "tiny", "fine_tune", train_bn=False)
    assert precise_bn.training_bn_layers(model) == []
    model_lib.set_trainable(model, "tiny", "fine_tune")
    assert len(precise_bn.training_bn_layers(model)) == 3


def test_recalibration_closes_the_train_inference_gap():
    """A few steps at a high learning rate with momentum 0.99: the EMA lags far behind."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def faces(n):  # brightness encodes the age, so the net has something to learn
        age = rng.uniform(0, 80, n).astype("float32")
        images = rng.normal(0, 20, (n, 32, 32, 3)) + 2.5 * age[:, None, None, None] + 30
        return np.clip(images, 0, 255).astype("float32"), age

    model = model_lib.build_model(backbone="tiny", image_size=32, head="regression",
                                  max_age=100, dropout=0.0, initial_age=40.0, bn_momentum=0.99)
    images, ages = faces(640)
    model.compile(keras.optimizers.Adam(0.05), "mae")
    model.fit(images, ages, batch_size=32, epochs=2, verbose=0)
    held_out, held_out_ages = faces(64)

    def inference_vs_training():
        inference = model(held_out, training=False).numpy()[:, 0]
        training = model(held_out, training=True).numpy()[:, 0]
        return (np.abs(inference - training).mean(), np.abs(inference - held_out_ages).mean(),
                np.abs(training - held_out_ages).mean())

    gap, inference_mae, training_mae = inference_vs_training()
    assert gap > 20 and inference_mae > 3 * training_mae  # the bug, reproduced
    precise_bn.recalibrate(model, tf.data.Dataset.from_tensor_slices(images).batch(32), 20)
    gap_after, inference_mae_after, training_mae_after = inference_vs_training()
    assert gap_after < 0.1 * gap
    assert inference_mae_after < 1.5 * training_mae_after


def _recalibrated_stats(data_dir, strategy_name, strategy):
    """Moving statistics after precise BN through the trainer's own calibration dataset.

    Returns (replicas, batches averaged, [[per-replica copies] per statistic] per layer).
    """
    config = Config(data_dir=data_dir, model_dir="unused", backbone="tiny", weights="none",
                    batch_size=8, deterministic=True, distribution_strategy=strategy_name)
    plan = train.make_plan(config, stats_file.read(data_dir), strategy.num_replicas_in_sync,
                           distribution.num_workers(strategy))
    keras.utils.set_random_seed(0)
    model = train.build(config, plan, strategy)
    model_lib.set_trainable(model, "tiny", "fine_tune")
    dataset = train.make_calibration_dataset(config, plan, strategy)
    with strategy.scope():
        precise_bn.recalibrate(model, dataset, plan.bn_recalibration_batches, strategy)
    layers = precise_bn.training_bn_layers(model)
    # Every replica's copy (a MirroredVariable has one per device), not just the first.
    copies = [[strategy.experimental_local_results(v)
               for v in (layer.moving_mean.value, layer.moving_variance.value)]
              for layer in layers]
    return strategy.num_replicas_in_sync, plan.bn_recalibration_batches, copies


def test_two_replicas_get_the_statistics_one_device_computes(tmp_path, mirrored_strategy):
    data_dir = write_dataset(tmp_path / "data", image_size=32,
                             counts={"train": 48, "validation": 8})
    one_replicas, batches, one = _recalibrated_stats(
        data_dir, "one_device", distribution.create_strategy("one_device"))
    two_replicas, _, two = _recalibrated_stats(data_dir, "mirrored", mirrored_strategy)
    assert (one_replicas, two_replicas, batches) == (1, 2, 6)  # capped at one pass: 48 / 8
    for one_layer, two_layer in zip(one, two, strict=True):
        for (reference,), copies in zip(one_layer, two_layer, strict=True):
            assert len(copies) == 2
            for copy in copies:  # each replica's copy equals the one-device value
                np.testing.assert_allclose(copy.numpy(), reference.numpy(), rtol=1e-4,
                                           atol=1e-5)
    assert np.abs(one[0][0][0].numpy()).max() > 1e-3  # moved away from the zero init


# One worker of a two-worker MultiWorkerMirroredStrategy job: recalibrates on its own files
# and prints its moving statistics.
_WORKER = """
import json, sys
sys.path.insert(0, sys.argv[2])
from test_trainer_precise_bn import _recalibrated_stats
from trainer import distribution
strategy = distribution.create_strategy("multi_worker_mirrored")
replicas, batches, copies = _recalibrated_stats(sys.argv[1], "multi_worker_mirrored", strategy)
print(json.dumps([replicas, batches, [[c.numpy().tolist() for stat in layer for c in stat]
                                       for layer in copies]]))
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_end_with_identical_statistics(tmp_path):
    """Each worker reads different files; the all-reduced statistics still agree exactly."""
    data_dir = write_dataset(tmp_path / "data", image_size=32,
                             counts={"train": 48, "validation": 8})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workers = [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]
    procs = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2",
                   CUDA_VISIBLE_DEVICES="", TF_CONFIG=json.dumps(
                       {"cluster": {"worker": workers}, "task": {"type": "worker",
                                                                 "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _WORKER, data_dir, os.path.dirname(__file__)], env=env,
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [r[:2] for r in results] == [[2, 6], [2, 6]]  # 2 replicas, one pass of 48 / 8
    first, second = (np.concatenate([np.ravel(c) for layer in r[2] for c in layer])
                     for r in results)
    np.testing.assert_array_equal(first, second)
    assert np.abs(first).max() > 1e-3


def test_run_recalibrates_before_every_fine_tune_validation(tmp_path):
    data_dir = write_dataset(tmp_path / "data", image_size=32,
                             counts={"train": 48, "validation": 12})
    config = Config(data_dir=data_dir, model_dir=str(tmp_path / "m"), backbone="tiny",
                    weights="none", batch_size=8, epochs=2, freeze_epochs=1, steps_per_epoch=2,
                    verbose=0, augment="none", export=False, bn_recalibration_batches=3)
    metrics = train.run(config)
    rows = json.loads((tmp_path / "m" / "history.json").read_text())
    assert [r["stage"] for r in rows] == ["head", "fine_tune"]
    assert "bn_recalibration_seconds" not in rows[0]  # the frozen backbone's BN is left alone
    assert rows[1]["bn_recalibration_seconds"] > 0
    assert np.isfinite(metrics["val_mae"])


@pytest.mark.parametrize("value", [-1, 1.5])
def test_bad_recalibration_batches_is_a_clear_error(value):
    with pytest.raises(ValueError, match="--bn_recalibration_batches"):
        Config(data_dir="d", model_dir="m", bn_recalibration_batches=value)
