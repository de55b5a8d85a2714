"""Real training runs on tiny synthetic records: strategies, outputs contract, export, predict."""

import csv
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contract import stats as stats_file
from contract.framing import Framing
from preprocessing.fake_records import signal_image, write_dataset
from trainer import data, distribution, export, framing, train
from trainer import model as model_lib
from trainer.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), image_size=32,
                         counts={"train": 48, "validation": 12})


def _config(data_dir, model_dir, **kw):
    base = dict(backbone="tiny", weights="none", batch_size=8, epochs=1, freeze_epochs=1,
                verbose=0, augment="none", deterministic=True, dropout=0.0, export=False)
    return Config(data_dir=data_dir, model_dir=str(model_dir), **{**base, **kw})


def test_mirrored_two_replicas_first_step_loss_matches_one_device(data_dir, tmp_path,
                                                                   mirrored_strategy):
    """Same global batch, same initial weights: the same first-step loss and update.

    The batches come from an unshuffled pipeline because Keras's fit() under MirroredStrategy
    opens the dataset twice (a symbolic build first), so a reshuffling pipeline would feed the
    two strategies different first batches.
    """
    results = {}
    for name in ("one_device", "mirrored"):
        c = _config(data_dir, tmp_path / name, distribution_strategy=name, steps_per_epoch=1,
                    sample_weighting="lds")
        strategy = (mirrored_strategy if name == "mirrored"
                    else distribution.create_strategy(name))
        plan = train.make_plan(c, stats_file.read(data_dir), strategy.num_replicas_in_sync)
        dataset = strategy.distribute_datasets_from_function(
            lambda ctx, plan=plan: data.build_dataset(
                data_dir, "train", training=False, repeat=-1, input_context=ctx,
                batch_size=ctx.get_per_replica_batch_size(plan.global_batch), image_size=32,
                age_weights=plan.age_weights))
        keras.utils.set_random_seed(0)
        model = train.build(c, plan, strategy)
        train.compile_stage(model, c, plan, "head", 1, strategy)
        plain = data.build_dataset(data_dir, "train", training=False, batch_size=8,
                                   image_size=32, age_weights=plan.age_weights)
        images, ages, weights = next(iter(plain))
        predicted = model(images, training=False).numpy()[:, 0]
        expected = np.sum(np.abs(predicted - ages.numpy()) * weights.numpy()) / 8
        history = model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
        assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
        results[name] = (history.history["loss"][0], model.get_layer("age").kernel.numpy())
    assert strategy.num_replicas_in_sync == 2
    assert results["one_device"][0] > 1.0
    assert results["mirrored"][0] == pytest.approx(results["one_device"][0], rel=1e-5)
    np.testing.assert_allclose(results["mirrored"][1], results["one_device"][1], rtol=1e-4,
                               atol=1e-6)


def test_run_writes_the_output_contract(data_dir, tmp_path):
    c = _config(data_dir, tmp_path / "m", head="dex", epochs=3, freeze_epochs=1, export=True,
                steps_per_epoch=3, augment="default", deterministic=False)
    metrics = train.run(c)
    model_dir = tmp_path / "m"
    assert json.loads((model_dir / "config.json").read_text())["head"] == "dex"
    rows = list(csv.DictReader(io.StringIO((model_dir / "history.csv").read_text())))
    assert list(rows[0]) == ["epoch", "stage", "loss", "mae", "val_loss", "val_mae", "lr"]
    assert [(r["epoch"], r["stage"]) for r in rows] == [
        ("0", "head"), ("1", "fine_tune"), ("2", "fine_tune")]
    assert float(rows[0]["lr"]) > float(rows[1]["lr"]) > 0  # head lr 1e-3, fine-tune 1e-5
    written = json.loads((model_dir / "metrics.json").read_text())
    assert written == metrics and 0 <= written["val_cs5"] <= 1 and written["val_mae"] > 0
    assert written["val_mae"] == pytest.approx(
        min(float(r["val_mae"]) for r in rows), rel=1e-4)  # the best epoch's weights
    loaded = tf.saved_model.load(str(model_dir / "saved_model"))
    # metrics.json records the framing the SavedModel serves: the records', at the model's size.
    assert Framing.from_dict(written) == framing.read_framing(loaded) == Framing(32).served()
    out = loaded.signatures["serving_default"](
        image_bytes=tf.constant([_png(signal_image(30.0, 40, np.random.default_rng(0)))]))
    assert out["age"].shape == (1,) and out["age_distribution"].shape == (1, 101)
    assert not (model_dir / "checkpoints" / "backup").exists()  # resume state removed at the end


def test_ema_weights_are_validated_kept_and_restored(data_dir, tmp_path):
    """With --ema_momentum the average is what precise BN, validation, the best weights and the
    final evaluation all see: metrics.json's val_mae, measured on the restored best weights,
    is the best epoch's val_mae from training. And the average really is used: the same
    deterministic run without it validates differently."""
    runs = {}
    for ema in (0.0, 0.5):
        c = _config(data_dir, tmp_path / f"ema{ema}", epochs=3, freeze_epochs=0,
                    steps_per_epoch=3, fine_tune_learning_rate=1e-2, ema_momentum=ema)
        metrics = train.run(c)
        rows = json.loads((tmp_path / f"ema{ema}" / "history.json").read_text())
        runs[ema] = [r["val_mae"] for r in rows]
        assert metrics["val_mae"] == pytest.approx(min(runs[ema]), rel=1e-4)
    assert runs[0.5] != pytest.approx(runs[0.0], rel=1e-3)


def test_a_fresh_run_does_not_restore_an_earlier_runs_best_weights(data_dir, tmp_path):
    """A finished run keeps its best weights; a later fresh run into the same dir (here with
    another head: another shape) must neither restore them nor compare against their val_mae."""
    model_dir = tmp_path / "m"
    train.run(_config(data_dir, model_dir, head="regression", steps_per_epoch=1))
    best_file = model_dir / "checkpoints" / "best.json"
    best_file.write_text(json.dumps({"value": 0.0, "epoch": 0}))  # as if unbeatable
    metrics = train.run(_config(data_dir, model_dir, head="dex", steps_per_epoch=1))
    rows = json.loads((model_dir / "history.json").read_text())
    assert [r["stage"] for r in rows] == ["head"]
    assert metrics["best_epoch"] == 0
    assert json.loads(best_file.read_text())["value"] == pytest.approx(rows[0]["val_mae"])
    assert metrics["val_mae"] == pytest.approx(rows[0]["val_mae"], rel=1e-4)


def test_crash_after_training_reruns_no_epoch(data_dir, tmp_path, monkeypatch, caplog):
    """Pre-empted after the last epoch (here: in the final evaluation), the same command
    restores both finished stages instead of training the fine-tuning stage again."""
    c = _config(data_dir, tmp_path / "m", epochs=2, freeze_epochs=1, steps_per_epoch=1)
    real_evaluate = train.evaluate

    def preempted(*args, **kwargs):
        raise RuntimeError("pre-empted")

    monkeypatch.setattr(train, "evaluate", preempted)
    with pytest.raises(RuntimeError, match="pre-empted"):
        train.run(c)
    history = tmp_path / "m" / "history.json"
    rows = json.loads(history.read_text())
    assert [r["stage"] for r in rows] == ["head", "fine_tune"]
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    with caplog.at_level("INFO"):
        metrics = train.run(c)
    assert "stage fine_tune: resuming" in caplog.text
    assert json.loads(history.read_text()) == rows  # not one epoch re-run
    assert metrics["val_mae"] == pytest.approx(min(r["val_mae"] for r in rows), rel=1e-4)
    assert not (tmp_path / "m" / "checkpoints" / "backup").exists()


def _png(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("head", ["regression", "dex"])
def test_export_matches_in_memory_model(tmp_path, head):
    model = model_lib.build_model(backbone="tiny", image_size=32, head=head, max_age=20,
                                  initial_age=10.0)
    path = export.export_saved_model(model, str(tmp_path / "sm"), Framing(32), head, max_age=20)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(3)]
    expected = model_lib.expected_age(
        model(framing.frame(tf.constant(np.stack(images)), 32), training=False), head)
    expected = np.clip(expected.numpy(), 0, 20)
    loaded = tf.saved_model.load(path)
    from_bytes = loaded.signatures["serving_default"](
        image_bytes=tf.constant([_png(i) for i in images]))
    from_images = loaded.signatures["predict_images"](
        images=tf.constant(np.stack(images), tf.float32))
    np.testing.assert_allclose(from_bytes["age"].numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(from_images["age"].numpy(), expected, rtol=1e-4, atol=1e-4)
    assert ("age_distribution" in from_bytes) == (head == "dex")
    # Centre crop: a 48x40 image is cropped to its middle 40x40 before resizing.
    square = framing.frame(tf.constant(images[0]), 40).numpy()
    np.testing.assert_allclose(square, images[0][4:44].astype(np.float32), atol=1e-3)

    # The CLI: one unreadable file is reported, the others still predicted.
    files = []
    for i, image in enumerate(images[:2]):
        files.append(str(tmp_path / f"face{i}.png"))
        Image.fromarray(image).save(files[-1])
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    args = [sys.executable, "-m", "trainer.predict", f"--model={path}", "--tta_flip",
            *files, str(tmp_path / "broken.jpg")]
    if head == "dex":
        return  # the CLI does not depend on the head: run it once
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0] == ["file", "age"] and [r[0] for r in rows[1:]] == files
    assert "broken.jpg" in proc.stderr
    flipped = loaded.signatures["predict_images"](
        images=tf.constant(np.stack(images[:2])[:, :, ::-1], tf.float32))["age"].numpy()
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]],
                               0.5 * (expected[:2] + flipped), atol=0.02)
    bad = subprocess.run(args[:4] + [str(tmp_path / "broken.jpg")], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert bad.returncode != 0 and "could be read" in bad.stderr


def test_data_dir_without_shards_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="stats.json"):
        train.run(_config(str(empty), tmp_path / "m"))
    (empty / "stats.json").write_text(json.dumps(
        {"image_size": 32, "max_age": 100, "splits": {"train": {"count": 8},
                                                       "validation": {"count": 8}}}))
    with pytest.raises(FileNotFoundError, match=r"train-\*-of-\*"):
        train.run(_config(str(empty), tmp_path / "m"))


@pytest.mark.slow
def test_resnet50_one_step(data_dir, tmp_path):
    metrics = train.run(_config(data_dir, tmp_path / "r", backbone="resnet50", freeze_epochs=0,
                                steps_per_epoch=1, batch_size=4))
    assert np.isfinite(metrics["val_mae"])
