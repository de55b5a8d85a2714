"""trainer.predict --face=detect|align on whole photos: astronaut scenes (preprocessing.scenes)
through the real MTCNN graph and a fixed-weight SavedModel whose age is the mean colour."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixed_models import mean_colour_model
from PIL import Image

from contract.framing import Framing
from imaging import faces
from preprocessing import scenes
from trainer import export, photos, predict

pytest.importorskip("skimage")
pytest.importorskip("mtcnn")
REPO = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def detector():
    return faces.detector()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "saved_model"
    export.export_saved_model(mean_colour_model(SIZE), str(path), Framing(SIZE), "regression",
                              max_age=120)
    return path


def write_scene(path: Path, index: int, num_faces: int):
    s = scenes.compose([scenes.astronaut()], np.random.default_rng([7, index]), num_faces)
    Image.fromarray(s.image).save(path, quality=95)
    return s


def mean_colour_age(rgb: np.ndarray, box) -> float:
    """The fixed model's age for the photo's pixels inside box (its central square)."""
    x0, y0, x1, y1 = box
    side = min(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    region = rgb[int(cy - side / 2):int(cy + side / 2), int(cx - side / 2):int(cx + side / 2)]
    return 80.0 * region.astype(np.float64).mean() / 255.0 + 5.0


def test_each_face_is_found_cropped_and_predicted(tmp_path, detector, model_dir):
    truths = {}
    for i, n in enumerate((1, 2, 3)):
        path = tmp_path / f"scene{i}.jpg"
        truths[str(path)] = write_scene(path, i, n)
    empty = tmp_path / "empty.jpg"
    write_scene(empty, 9, 0)
    paths = [*truths, str(empty), str(tmp_path / "missing.jpg")]
    loaded = predict.load(str(model_dir))
    rows, errors, no_face = predict.predict_photos(loaded, paths, "detect",
                                                   annotate_dir=str(tmp_path / "out"),
                                                   detector=detector)
    assert no_face == [str(empty)] and list(errors) == [str(tmp_path / "missing.jpg")]
    for path, s in truths.items():
        mine = [r for r in rows if r["file"] == path]
        assert [r["face"] for r in mine] == list(range(len(s.faces)))  # one line per face
        areas = [(r["box"][2] - r["box"][0]) * (r["box"][3] - r["box"][1]) for r in mine]
        assert areas == sorted(areas, reverse=True)  # largest first
        image = np.asarray(Image.open(path).convert("RGB"))
        for r in mine:
            assert max(faces.iou(r["box"], t.box) for t in s.faces) > 0.5, r
            assert r["score"] > 0.9
            assert r["age"] == pytest.approx(mean_colour_age(image, r["box"]), abs=1.5)
        with Image.open(tmp_path / "out" / (Path(path).stem + ".png")) as drawn:
            drawn = np.asarray(drawn.convert("RGB")).astype(int)
        assert drawn.shape == image.shape
        x0, y0, x1, _ = (round(v) for v in mine[0]["box"])
        edge = drawn[y0, x0 + 2:x1 - 2]  # the top edge of the first box: drawn in red
        assert (edge[:, 0] > 200).mean() > 0.9 and (edge[:, 1] < 100).mean() > 0.9
    assert not (tmp_path / "out" / "empty.png").exists()


def test_align_levels_a_tilted_face_before_predicting(detector):
    s = scenes.compose([scenes.astronaut()], np.random.default_rng(3), 1)
    [(face, crop)] = photos.face_crops(s.image, "align", detector)
    assert crop.shape == (photos.ALIGNED_SIDE, photos.ALIGNED_SIDE, 3)
    [again] = faces.detect(crop, detector)
    assert abs(again.tilt()) < 4 and abs(face.tilt() - s.faces[0].angle) < 6


def test_photo_over_the_limits_is_refused_before_decoding(tmp_path, model_dir):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (2000, 20)).save(strip)  # aspect ratio 100
    loaded = predict.load(str(model_dir))
    rows, errors, no_face = predict.predict_photos(loaded, [str(strip)], "align")
    assert not rows and not no_face
    assert "refused before decoding" in errors[str(strip)]
    assert "aspect ratio" in errors[str(strip)]


def cli(model_dir, *args):
    return subprocess.run([sys.executable, "-m", "trainer.predict", f"--model={model_dir}",
                           *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_cli_prints_one_line_per_face_as_csv_and_json(tmp_path, model_dir):
    scene = tmp_path / "two.jpg"
    truth = write_scene(scene, 1, 2)
    empty = tmp_path / "empty.jpg"
    write_scene(empty, 9, 0)
    proc = cli(model_dir, "--face=align", "--json", scene, empty)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["file"], r["face"]) for r in rows] == [(str(scene), 0), (str(scene), 1)]
    assert all(len(r["box"]) == 4 and 0 < r["score"] <= 1 and 5 <= r["age"] <= 85
               for r in rows)
    assert sorted(max(faces.iou(r["box"], t.box) for r in rows) for t in truth.faces)[0] > 0.5
    assert f"no face found in {empty}" in proc.stderr.splitlines()
    as_csv = cli(model_dir, "--face=detect", scene)
    lines = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert lines[0] == ["file", "face", "x0", "y0", "x1", "y1", "score", "age"]
    assert [line[:2] for line in lines[1:]] == [[str(scene), "0"], [str(scene), "1"]]
    nothing = cli(model_dir, "--face=detect", empty)
    assert nothing.returncode == 1 and "gave a face" in nothing.stderr


def test_serve_predict_sends_each_face_crop_and_prints_one_line_per_face(
        tmp_path, monkeypatch, capsys, detector, model_dir):
    """deploy.serve predict --face=detect, offline: the real PredictRequest is answered by the
    SavedModel's serving_default in TF Serving's row format, as the endpoint would."""
    import base64

    import tensorflow as tf
    from absl import flags
    from absl.testing import flagsaver
    from google.cloud import aiplatform_v1 as v1

    from deploy import serve

    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]

    def endpoint(request, method, client_kind, dry_run):
        assert (method, client_kind, dry_run) == ("predict", "PredictionServiceClient", None)
        instances = json.loads(type(request).to_json(request))["instances"]
        batch = tf.constant([base64.b64decode(i["image_bytes"]["b64"]) for i in instances])
        response = v1.PredictResponse()
        response.predictions.extend(float(a) for a in signature(image_bytes=batch)["age"]
                                    .numpy().reshape(-1))
        return response

    monkeypatch.setattr(serve, "_send", endpoint)
    monkeypatch.chdir(tmp_path)
    write_scene(tmp_path / "=two.jpg", 1, 2)  # a name a spreadsheet would run as a formula
    write_scene(tmp_path / "empty.jpg", 9, 0)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["serve"])
    with flagsaver.flagsaver(endpoint="7", face="detect"):
        serve.predict("my-proj", "us-central1", ["=two.jpg", "empty.jpg"], None)
    out = capsys.readouterr()
    lines = list(csv.reader(io.StringIO(out.out)))
    assert lines[0] == ["file", "face", "x0", "y0", "x1", "y1", "score", "age"]
    assert [line[:2] for line in lines[1:]] == [["'=two.jpg", "0"], ["'=two.jpg", "1"]]
    assert "no face found in empty.jpg" in out.err.splitlines()
    # The endpoint saw the pixels trainer.predict frames: the same ages for the same faces.
    rows, _, _ = predict.predict_photos(predict.load(str(model_dir)), ["=two.jpg"], "detect",
                                        detector=detector)
    np.testing.assert_allclose([float(line[7]) for line in lines[1:]], [r["age"] for r in rows],
                               atol=0.011)
    assert [[float(v) for v in line[2:6]] for line in lines[1:]] == [r["box"] for r in rows]


@pytest.mark.slow
def test_serve_dry_run_with_align_sends_one_aligned_png_per_face(tmp_path):
    import base64

    scene = tmp_path / "three.jpg"
    write_scene(scene, 2, 3)
    proc = subprocess.run([sys.executable, "-m", "deploy.serve", "predict", "--project=my-proj",
                           "--region=us-central1", "--endpoint=7", "--face=align", "--dry_run",
                           str(scene)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [call] = json.loads(proc.stdout)
    sent = [Image.open(io.BytesIO(base64.b64decode(i["image_bytes"]["b64"])))
            for i in call["request"]["instances"]]
    assert [(s.format, s.size) for s in sent] == [("PNG", (photos.ALIGNED_SIDE,) * 2)] * 3
