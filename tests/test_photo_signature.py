"""The exported whole-photo signature (trainer.photo_signature) on astronaut scenes with 0, 1 and
2 faces, eagerly and through TensorFlow Serving's TF1 session loader, against the ground truth
and against trainer.predict's client-side path on the same photos."""

import io

import numpy as np
import pytest
from fixed_models import mean_colour_model
from PIL import Image

from contract.framing import Framing
from deploy.hostile_images import flat_png
from deploy.serving_runtime_check import run_eager, run_v1
from imaging import faces
from preprocessing import scenes
from trainer import export, framing, photo_signature, photos, predict

pytest.importorskip("skimage")
pytest.importorskip("mtcnn")
SIZE = 32
FACE_COUNTS = (2, 0, 1)


@pytest.fixture(scope="module")
def photo_scenes():
    """(JPEG bytes, Scene) per scene."""
    out = []
    for i, n in enumerate(FACE_COUNTS):
        s = scenes.compose([scenes.astronaut()], np.random.default_rng([7, i]), n)
        buf = io.BytesIO()
        Image.fromarray(s.image).save(buf, "JPEG", quality=95)
        out.append((buf.getvalue(), s))
    return out


@pytest.fixture(scope="module")
def aligned_export(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("photo") / "saved_model")
    return export.export_saved_model(mean_colour_model(SIZE), path, Framing(SIZE), "regression",
                                     max_age=120, photo_face="align")


def client_ages(loaded, data: bytes, mode: str) -> list[float]:
    """trainer.predict's path: crops cut with PIL (trainer.photos), framed, predict_images."""
    crops = photos.face_crops(photos.upright_rgb(data), mode)
    framed = [framing.decode_and_frame(photos.png_bytes(c), Framing(SIZE)).numpy()
              for _, c in crops]
    return list(predict.predict_ages(loaded, np.stack(framed))) if framed else []


@pytest.mark.slow
def test_eager_and_tf_serving_loader_agree_and_find_the_faces(aligned_export, photo_scenes):
    import tensorflow as tf

    loaded = tf.saved_model.load(aligned_export)
    assert photo_signature.NAME in loaded.signatures
    assert loaded.photo.face.numpy() == b"align"
    k = int(loaded.photo.max_faces.numpy())
    feed = {"image_bytes": np.array([d for d, _ in photo_scenes], dtype=object)}
    eager = run_eager(loaded, photo_signature.NAME, feed)
    graph = run_v1(aligned_export, photo_signature.NAME, feed)
    assert set(eager) == set(graph) == set(photo_signature.OUTPUTS)
    for name in photo_signature.OUTPUTS:
        np.testing.assert_array_equal(graph[name], eager[name], err_msg=name)
    b = len(photo_scenes)
    assert [eager[n].shape for n in photo_signature.OUTPUTS] == [
        (b, k, 4), (b, k, 5, 2), (b, k), (b, k), (b,)]
    assert eager["num_faces"].tolist() == list(FACE_COUNTS)
    for i, (data, s) in enumerate(photo_scenes):
        n = int(eager["num_faces"][i])
        for name in ("boxes", "landmarks", "scores", "ages"):  # padding rows are zeros
            assert not eager[name][i, n:].any(), name
        boxes = eager["boxes"][i, :n]
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        assert list(areas) == sorted(areas, reverse=True)  # largest first
        for box, marks in zip(boxes, eager["landmarks"][i, :n], strict=True):
            truth = max(s.faces, key=lambda t, box=box: faces.iou(box, t.box))
            assert faces.iou(box, truth.box) > 0.5
            eye_error = np.abs(marks[:2] - np.asarray(truth.eyes)).max()
            assert eye_error < 0.1 * (truth.box[2] - truth.box[0])
        assert (eager["scores"][i, :n] > 0.9).all()
        # The client-side path on the same photo: the same faces, the same ages.
        np.testing.assert_allclose(eager["ages"][i, :n], client_ages(loaded, data, "align"),
                                   atol=0.01)


@pytest.mark.slow
def test_detect_crops_equal_the_clients_exactly(aligned_export, photo_scenes):
    """``detect`` (here around a loaded SavedModel's predict_images, as the benchmark uses it):
    the box crop is the very pixels trainer.photos cuts, so the ages agree to float rounding."""
    import tensorflow as tf

    loaded = tf.saved_model.load(aligned_export)
    signature = photo_signature.from_saved_model(loaded, "detect", max_faces=2)
    out = signature.predict_photo(tf.constant([d for d, _ in photo_scenes]))
    out = {k: v.numpy() for k, v in out.items()}
    assert out["ages"].shape == (len(photo_scenes), 2)
    for i, (data, _) in enumerate(photo_scenes):
        n = int(out["num_faces"][i])
        np.testing.assert_allclose(out["ages"][i, :n], client_ages(loaded, data, "detect"),
                                   atol=1e-3)


@pytest.mark.slow
def test_oversized_photos_are_refused_before_decoding(aligned_export):
    import tensorflow as tf

    loaded = tf.saved_model.load(aligned_export)
    feed = {"image_bytes": np.array([flat_png(4000, 100)], dtype=object)}  # aspect ratio 40
    for run in (lambda: run_eager(loaded, photo_signature.NAME, feed),
                lambda: run_v1(aligned_export, photo_signature.NAME, feed)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="4000x100 has aspect ratio"):
            run()


@pytest.mark.parametrize("degrees, scale", [(0, 1.0), (17, 1.0), (-29, 0.3)])
def test_the_graphs_aligned_crop_is_pils(degrees, scale):
    """align_crop repeats imaging.faces.align (PIL's bicubic affine transform) in TF ops: the
    same pixels but for float32 against float64 rounding, near the edge of the photo too."""
    import tensorflow as tf

    photo = Image.fromarray(scenes.astronaut().image).rotate(degrees, resample=Image.BICUBIC)
    photo = np.asarray(photo.resize((round(512 * scale),) * 2, Image.BICUBIC))
    marks = np.array([(204, 100), (245, 102), (224, 126), (202, 139), (244, 140)], float)
    turn = np.radians(degrees)
    rot = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    marks = ((marks - 256) @ rot.T + 256) * scale
    corner = marks - marks[0] + 2  # the left eye at the photo's corner: the crop runs past it
    for landmarks in (marks, corner):
        face = faces.Face((0, 0, 1, 1), tuple(map(tuple, landmarks)), 1.0)
        want = faces.align(photo, face, photos.ALIGNED_SIDE).astype(np.float32)
        got = photo_signature.align_crop(tf.constant(photo),
                                         tf.constant(landmarks, tf.float32)).numpy()
        assert np.abs(got - want).max() <= 1 and (got != want).mean() < 1e-3
    assert (want == 0).all(axis=2).mean() > 0.2  # the corner case: black past the edge


def test_a_request_without_any_face_never_runs_the_model_on_an_empty_batch(photo_scenes):
    """oneDNN's convolution on AVX-512 CPUs fails on an empty batch, so a request whose photos
    hold no face must still hand the age model at least one row (a blank one, dropped)."""
    import tensorflow as tf

    def outputs_fn(images):
        with tf.control_dependencies([tf.debugging.assert_positive(
                tf.shape(images)[0], message="empty batch reached the model")]):
            return {"age": tf.reduce_mean(images, [1, 2, 3])}

    signature = photo_signature.PhotoSignature(outputs_fn, Framing(SIZE), "detect", max_faces=2)
    empty = photo_scenes[FACE_COUNTS.index(0)][0]
    out = signature.predict_photo(tf.constant([empty, empty]))
    assert out["num_faces"].numpy().tolist() == [0, 0] and not out["ages"].numpy().any()
    first = photo_scenes[0][0]
    out = signature.predict_photo(tf.constant([first, empty]))
    assert out["num_faces"].numpy().tolist() == [2, 0] and out["ages"].numpy()[0].all()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="face='none'"):
        photo_signature.check_face("none")
    with pytest.raises(ValueError, match="max_faces=0"):
        photo_signature.PhotoSignature(None, Framing(SIZE), max_faces=0)


@pytest.mark.slow
def test_serve_predict_face_model_prints_the_signatures_faces(
        tmp_path, monkeypatch, capsys, aligned_export, photo_scenes):
    """deploy.serve predict --face=model, offline: the real RawPredictRequest's body is answered
    by the exported predict_photo signature in TF Serving's row format, as the endpoint would."""
    import base64
    import csv
    import json

    import tensorflow as tf
    from absl import flags
    from absl.testing import flagsaver
    from google.api import httpbody_pb2

    from deploy import serve

    loaded = tf.saved_model.load(aligned_export)

    def endpoint(request, method, client_kind, dry_run):
        assert (method, client_kind, dry_run) == ("raw_predict", "PredictionServiceClient", None)
        body = json.loads(request.http_body.data)
        signature = loaded.signatures[body["signature_name"]]
        batch = tf.constant([base64.b64decode(i["image_bytes"]["b64"])
                             for i in body["instances"]])
        out = {k: v.numpy().tolist() for k, v in signature(image_bytes=batch).items()}
        rows = [dict(zip(out, values, strict=True)) for values in zip(*out.values(),
                                                                      strict=True)]
        return httpbody_pb2.HttpBody(content_type="application/json",
                                     data=json.dumps({"predictions": rows}).encode())

    monkeypatch.setattr(serve, "_send", endpoint)
    monkeypatch.chdir(tmp_path)
    names = [f"scene{i}.jpg" for i in range(len(photo_scenes))]
    for name, (data, _) in zip(names, photo_scenes, strict=True):
        (tmp_path / name).write_bytes(data)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["serve"])
    with flagsaver.flagsaver(endpoint="7", face="model"):
        serve.predict("my-proj", "us-central1", names, None)
    out = capsys.readouterr()
    lines = list(csv.reader(io.StringIO(out.out)))
    assert lines[0] == ["file", "face", "x0", "y0", "x1", "y1", "score", "age"]
    assert [line[:2] for line in lines[1:]] == [["scene0.jpg", "0"], ["scene0.jpg", "1"],
                                                ["scene2.jpg", "0"]]
    assert "no face found in scene1.jpg" in out.err.splitlines()
    direct = run_eager(loaded, photo_signature.NAME,
                       {"image_bytes": np.array([d for d, _ in photo_scenes], dtype=object)})
    expected = [direct["ages"][i, j] for i, n in enumerate(FACE_COUNTS) for j in range(n)]
    np.testing.assert_allclose([float(line[7]) for line in lines[1:]], expected, atol=0.006)
