"""trainer.predict: importable next to deploy.serve, and its CLI on a trainer MODEL_DIR."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixed_models import grey_dex_model, grey_dex_std, mean_colour_model
from PIL import Image

from contract.framing import Framing
from trainer import export, predict

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def test_predict_and_serve_import_together():
    # Both are absl programs with a --model flag; importing them must not declare it twice.
    proc = subprocess.run([sys.executable, "-c", "import deploy.serve, trainer.predict"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _mean_colour_model():
    return mean_colour_model(SIZE)


def test_cli_takes_a_trainer_model_dir(tmp_path):
    model_dir = tmp_path / "model_dir"
    export.export_saved_model(_mean_colour_model(), str(model_dir / "saved_model"), Framing(SIZE),
                              "regression", max_age=120)
    files, expected = [], []
    for i, grey in enumerate((0, 128, 255)):
        path = tmp_path / f"face{i}.png"
        Image.new("RGB", (48, 40), (grey, grey, grey)).save(path)  # flat: crop/resize keep it
        files.append(str(path))
        expected.append(80.0 * grey / 255.0 + 5.0)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.predict", f"--model={model_dir}", *files,
         str(tmp_path / "broken.jpg")],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["file"] for r in rows] == files
    np.testing.assert_allclose([float(r["age"]) for r in rows], expected, atol=0.02)
    assert f"cannot read {tmp_path / 'broken.jpg'}" in proc.stderr


def test_a_model_path_that_is_neither_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a SavedModel .* nor a trainer MODEL_DIR"):
        predict.load(str(tmp_path))


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_oriented_photo_predicts_as_its_upright_copy(tmp_path, orientation):
    import tensorflow as tf
    from exif_images import save_sideways, upright_face
    from PIL import ImageOps

    saved = export.export_saved_model(mean_colour_model(SIZE, left_half=True),
                                      str(tmp_path / "sm"), Framing(SIZE), "regression",
                                      max_age=120)
    loaded = predict.load(saved)
    face = upright_face()
    sideways = save_sideways(face, tmp_path / "sideways.jpg", orientation)
    with Image.open(sideways) as stored:
        assert stored.size == (32, 48)  # stored portrait, shown landscape
        shown = np.asarray(ImageOps.exif_transpose(stored), np.float32)
    assert np.abs(shown - np.asarray(face, np.float32)).max() < 8  # JPEG noise only
    upright = tmp_path / "upright.png"
    face.save(upright)  # no EXIF
    images, ok, errors = predict.read_images([str(sideways), str(upright)], Framing(SIZE))
    assert not errors and ok == [str(sideways), str(upright)]
    ages = predict.predict_ages(loaded, images)
    assert abs(ages[1] - 5.0) < 0.5  # the black left half, as trained
    np.testing.assert_allclose(ages[0], ages[1], atol=0.5)
    # Without orienting, serving_default (TF ignores EXIF) sees a half-white left half.
    raw = loaded.signatures["serving_default"](
        image_bytes=tf.constant([sideways.read_bytes()]))["age"].numpy()
    assert abs(raw[0] - ages[1]) > 20


def test_cli_prints_the_std_of_dex_models(tmp_path):
    model_dir = tmp_path / "model_dir"
    export.export_saved_model(grey_dex_model(SIZE), str(model_dir / "saved_model"), Framing(SIZE),
                              "dex",
                              max_age=2)
    files = []
    for grey in (0, 255):
        files.append(str(tmp_path / f"grey{grey}.png"))
        Image.new("RGB", (40, 40), (grey, grey, grey)).save(files[-1])
    for extra in ([], ["--json"], ["--tta_flip"]):  # flat images: the mirror changes nothing
        proc = subprocess.run(
            [sys.executable, "-m", "trainer.predict", f"--model={model_dir}", *extra, *files],
            cwd=REPO, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        if extra == ["--json"]:
            rows = [json.loads(line) for line in proc.stdout.splitlines()]
        else:
            assert proc.stdout.splitlines()[0] == "file,age,age_std"
            rows = list(csv.DictReader(io.StringIO(proc.stdout)))
        np.testing.assert_allclose([float(r["age"]) for r in rows], [1.0, 1.0], atol=0.01)
        np.testing.assert_allclose([float(r["age_std"]) for r in rows],
                                   [grey_dex_std(0), grey_dex_std(255)], atol=0.01)


def test_tta_std_is_the_std_of_the_averaged_distribution():
    # A "model" whose age is the top-left pixel: an image and its mirror give 10 and 20 years,
    # each with no spread; the average of two point masses 10 years apart has std 5.
    def point_mass(images):
        ages = np.asarray(images)[:, 0, 0, 0]
        return {"age": ages, "age_std": np.zeros_like(ages)}

    images = np.array([[[[10.0] * 3, [20.0] * 3]]], np.float32)
    out = predict.predict_batch(point_mass, images, tta_flip=True)
    np.testing.assert_allclose(out["age"], [15.0])
    np.testing.assert_allclose(out["age_std"], [5.0])
    assert predict.predict_batch(point_mass, images)["age_std"].tolist() == [0.0]
