"""trainer.export_lite and trainer.lite: TFLite models through the real interpreter, and
trainer.evaluate on a .tflite."""

import json
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from fixed_models import grey_dex_model, grey_dex_std, mean_colour_model, near_constant_model

from contract.framing import Framing
from preprocessing import fake_records
from trainer import evaluate, export, export_lite, lite
from trainer.model import build_model

SIZE, MAX_AGE = 32, 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trainer MODEL_DIR (tiny dex network, seeded weights) and records to calibrate on."""
    root = tmp_path_factory.mktemp("lite")
    data_dir = fake_records.write_dataset(root / "data", image_size=SIZE,
                                          counts={"train": 40, "validation": 24})
    keras.utils.set_random_seed(0)
    model = build_model(backbone="tiny", image_size=SIZE, head="dex", max_age=MAX_AGE,
                        dropout=0.0)
    logits = model.get_layer("age_logits")
    logits.kernel.assign(logits.kernel * 30)  # spread the ages and stds of random weights
    export.export_saved_model(model, str(root / "model/saved_model"), Framing(SIZE), "dex",
                              MAX_AGE)
    (root / "model/config.json").write_text(json.dumps(
        {"backbone": "tiny", "head": "dex", "image_size": SIZE, "data_dir": str(data_dir)}))
    paths = {q: export_lite.export_lite(str(root / "model"), q, calibration_examples=20)
             for q in export_lite.QUANTIZATIONS}
    return root, str(data_dir), paths


def _faces(n=16, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


# Largest |tflite - SavedModel| allowed, years (age, std). int8 on a random tiny network with
# 20 calibration faces is rough; the UTKFace figures are in README.
TOLERANCE = {"none": (1e-3, 1e-3), "float16": (0.05, 0.05), "int8": (1.5, 1.5)}


@pytest.mark.parametrize("quantize", export_lite.QUANTIZATIONS)
def test_round_trip_through_the_interpreter(trained, quantize):
    root, data_dir, paths = trained
    path = paths[quantize]
    assert path == str(root / f"model/model_{quantize}.tflite")
    info = json.loads((root / f"model/model_{quantize}.json").read_text())
    assert (info["image_size"], info["head"], info["quantize"]) == (SIZE, "dex", quantize)
    assert info["outputs"] == ["age", "age_std"] and info["resize"] == "crop"
    assert ("calibration" in info) == (quantize == "int8")

    saved = tf.saved_model.load(str(root / "model/saved_model")).signatures["predict_images"]
    faces = _faces()
    want = {k: v.numpy() for k, v in saved(images=faces).items()}
    assert np.ptp(want["age"]) > 2 and np.ptp(want["age_std"]) > 0.5  # a non-trivial network
    got = lite.load_predict_fn(path)(faces)  # a batch of 16: the runner resizes the input
    one = lite.load_predict_fn(path)(faces[:1])
    for key, tol in zip(("age", "age_std"), TOLERANCE[quantize], strict=True):
        np.testing.assert_allclose(got[key], want[key], atol=tol, err_msg=key)
        np.testing.assert_allclose(one[key], got[key][:1], atol=1e-4)
    kinds = {d["dtype"] for d in lite.interpreter(path).get_tensor_details()}
    assert (np.int8 in kinds) == (quantize == "int8")
    assert (np.float16 in kinds) == (quantize == "float16")
    ops = _op_dtypes(lite.interpreter(path))
    if quantize == "int8":  # the convolutions in int8, the head (softmax on) in float32
        assert {t for op, t in ops if op == "CONV_2D"} == {np.int8}
        head = ops[[op for op, _ in ops].index("SOFTMAX"):]
        assert {t for _, t in head} == {np.float32} and len(head) >= 5
    details = lite.interpreter(path).get_signature_runner().get_input_details()
    assert details["images"]["dtype"] == np.float32  # float in, whatever the quantization


def test_evaluate_runs_the_report_through_the_interpreter(trained, tmp_path):
    root, data_dir, paths = trained
    by_saved = evaluate.evaluate(str(root / "model"), data_dir, "validation",
                                 str(tmp_path / "saved"), batch_size=10, worst=0)
    by_lite = evaluate.evaluate(paths["none"], data_dir, "validation", str(tmp_path / "lite"),
                                batch_size=10, worst=0)
    saved = pd.read_csv(tmp_path / "saved/predictions.csv")
    got = pd.read_csv(tmp_path / "lite/predictions.csv")
    assert len(got) == 24 and by_lite["model"] == paths["none"]
    for column in ("predicted_age", "age_std"):
        np.testing.assert_allclose(got[column], saved[column], atol=2e-3)
    for result in (by_saved, by_lite):
        assert [r["coverage"] for r in result["uncertainty"]["risk_coverage"]] == [0.5, 0.8, 1.0]
        assert result["uncertainty"]["risk_coverage"][-1]["mae"] == pytest.approx(
            result["overall"]["mae"])
    assert by_lite["overall"]["mae"] == pytest.approx(by_saved["overall"]["mae"], abs=2e-3)
    report = (tmp_path / "lite/report.md").read_text()
    assert "## Uncertainty (age std)" in report and "±2σ" in report
    assert (tmp_path / "lite/plots/risk_coverage.png").is_file()
    int8 = evaluate.evaluate(paths["int8"], data_dir, "validation", str(tmp_path / "int8"),
                             batch_size=10, worst=0)
    assert int8["overall"]["mae"] == pytest.approx(by_saved["overall"]["mae"], abs=1.5)


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_fixed_models_keep_their_known_answers(quantize):
    """Known ages and stds (tests/fixed_models.py) survive conversion and quantization."""
    greys = np.array([0.0, 64.0, 128.0, 255.0])
    faces = np.broadcast_to(greys[:, None, None, None], (4, SIZE, SIZE, 3)).astype(np.float32)

    def representative():  # int8 ranges come from these: they must span what is asked later
        for grey in np.linspace(0, 255, 18):
            yield {"images": np.full((1, SIZE, SIZE, 3), grey, np.float32)}

    regression = export_lite.convert(mean_colour_model(SIZE), head="regression", max_age=120,
                                     image_size=SIZE, quantize=quantize,
                                     representative=representative)
    dex = export_lite.convert(grey_dex_model(SIZE), head="dex", max_age=2, image_size=SIZE,
                              quantize=quantize, representative=representative)
    # int8: the input and pooled mean in 8 bits (steps of 1/255 of the range), the head float.
    tol = 1e-4 if quantize == "none" else 0.6
    ages = _run(regression, faces)
    assert set(ages) == {"age"}  # regression: no distribution, so no std
    np.testing.assert_allclose(ages["age"], 80 * greys / 255 + 5, atol=tol)
    out = _run(dex, faces)
    np.testing.assert_allclose(out["age"], 1.0, atol=tol / 6)
    np.testing.assert_allclose(out["age_std"], [grey_dex_std(g) for g in greys], atol=tol / 6)


def test_int8_keeps_in_float_the_ops_xnnpack_would_refuse():
    """A layer whose output barely varies over the calibration faces gets a requantization
    scale outside XNNPACK's range: a plain int8 conversion then cannot start in TFLite's
    default interpreter. export_lite keeps that op in float, and the model runs."""
    model = near_constant_model(SIZE)

    def representative():
        for grey in np.linspace(0, 255, 18):
            yield {"images": np.full((1, SIZE, SIZE, 3), grey, np.float32)}

    plain = tf.lite.TFLiteConverter.from_keras_model(model)
    plain.optimizations = [tf.lite.Optimize.DEFAULT]
    plain.representative_dataset = lambda: ([item["images"]] for item in representative())
    refused = plain.convert()
    assert export_lite.xnnpack_refused(refused)
    with pytest.raises(RuntimeError, match="failed to prepare"):
        tf.lite.Interpreter(model_content=refused).allocate_tensors()

    content = export_lite.convert(model, head="regression", max_age=120, image_size=SIZE,
                                  quantize="int8", representative=representative,
                                  float_head=False)
    assert export_lite.xnnpack_refused(content) == []
    greys = np.array([0.0, 100.0, 255.0])
    faces = np.broadcast_to(greys[:, None, None, None], (3, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(content, faces)["age"], 80 * greys / 255 + 5, atol=0.6)


def _op_dtypes(interpreter) -> list[tuple[str, type]]:
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    return [(op["op_name"], tensors[op["outputs"][0]]) for op in interpreter._get_ops_details()]


def test_int8_head_can_be_quantized_too(trained, tmp_path):
    root, _, _ = trained
    path = export_lite.export_lite(str(root / "model"), "int8", str(tmp_path / "all.tflite"),
                                   calibration_examples=10, float_head=False)
    ops = _op_dtypes(lite.interpreter(path))
    assert ("SOFTMAX", np.int8) in ops
    assert json.loads((tmp_path / "all.json").read_text())["float_head"] is False


def _run(content: bytes, faces) -> dict:
    runner = lite.interpreter(content).get_signature_runner(lite.SIGNATURE)
    return {k: v.reshape(-1) for k, v in runner(images=faces).items()}


def test_bad_inputs_are_named(trained, tmp_path):
    root, data_dir, paths = trained
    with pytest.raises(ValueError, match="--quantize='int4'"):
        export_lite.export_lite(str(root / "model"), "int4")
    with pytest.raises(ValueError, match="--output='x.bin': must end in .tflite"):
        export_lite.export_lite(str(root / "model"), "none", output="x.bin")
    bare = tmp_path / "bare"  # a SavedModel without the trainer's config.json beside it
    shutil.copytree(root / "model/saved_model", bare)
    with pytest.raises(FileNotFoundError, match="needs the trainer's MODEL_DIR"):
        export_lite.export_lite(str(bare), "none")
    with pytest.raises(ValueError, match="int8 needs calibration images"):
        export_lite.convert(mean_colour_model(SIZE), head="regression", max_age=120,
                            image_size=SIZE, quantize="int8")
    lonely = tmp_path / "lonely.tflite"
    shutil.copy(paths["none"], lonely)
    with pytest.raises(FileNotFoundError, match="lonely.json"):
        lite.load_predict_fn(str(lonely))
    with pytest.raises(ValueError, match=r"takes framed faces \[N, 32, 32, 3\], got \[1, 40"):
        lite.load_predict_fn(paths["none"])(np.zeros((1, 40, 32, 3), np.float32))
