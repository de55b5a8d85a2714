"""Serving requests: model upload, endpoint, deployment, predict (dry runs, no cloud)."""

import base64
import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from google.cloud.aiplatform.constants import prediction as sdk_prediction
from PIL import Image

from contract.framing import Framing
from deploy import machines, serving
from trainer import photos

REPO = Path(__file__).resolve().parents[1]


def make_image(path: Path, fmt: str, size: int = 32, seed: int = 0) -> Path:
    """A small noisy image (noise so JPEG sizes are realistic, not a few hundred bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def serve_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "deploy.serve", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    return proc


def test_deploy_dry_run_prints_upload_endpoint_and_deployment(tmp_path):
    proc = serve_cli("deploy", "--project=my-proj", "--region=europe-west4",
                     "--serving_container=prebuilt",
                     "--artifact_uri=gs://my-bucket/face-age/run1/model/saved_model",
                     "--model_id=age-v1", "--endpoint_id=age", "--machine_type=n1-standard-4",
                     "--accelerator_type=NVIDIA_TESLA_T4", "--accelerator_count=1",
                     "--min_replicas=1", "--max_replicas=3", "--dry_run")
    assert proc.returncode == 0, proc.stderr
    upload, endpoint, deployment = json.loads(proc.stdout)
    parent = "projects/my-proj/locations/europe-west4"

    assert upload["method"] == "ModelServiceClient.upload_model"
    assert upload["request"] == {
        "parent": parent, "modelId": "age-v1",
        "model": {"displayName": "age-v1",
                  "artifactUri": "gs://my-bucket/face-age/run1/model/saved_model",
                  # GPU serving machine -> the GPU build of the prebuilt TF image, EU mirror.
                  "containerSpec": {"imageUri": "europe-docker.pkg.dev/vertex-ai/prediction/"
                                                "tf2-gpu.2-15:latest"}}}
    assert endpoint == {"method": "EndpointServiceClient.create_endpoint",
                        "request": {"parent": parent, "endpointId": "age",
                                    "endpoint": {"displayName": "age"}}}
    assert deployment["method"] == "EndpointServiceClient.deploy_model"
    assert deployment["request"] == {
        "endpoint": f"{parent}/endpoints/age",
        "deployedModel": {
            "model": f"{parent}/models/age-v1", "displayName": "age-v1",
            "dedicatedResources": {
                "machineSpec": {"machineType": "n1-standard-4",
                                "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 1},
                "minReplicaCount": 1, "maxReplicaCount": 3}},
        "trafficSplit": {"0": 100}}
    assert proc.stderr.strip().endswith(f"{parent}/endpoints/age")


@pytest.mark.parametrize("accelerator, suffix", [([], ""),
                                                (["--accelerator_type=NVIDIA_TESLA_T4",
                                                  "--accelerator_count=1"], "-gpu")])
def test_tf_serving_is_the_default_custom_container(accelerator, suffix):
    """Field by field, and parsed strictly back into the SDK's own aiplatform_v1 types."""
    from google.cloud import aiplatform_v1 as v1

    proc = serve_cli("upload", "--project=my-proj", "--region=us-central1",
                     "--artifact_uri=gs://my-bucket/run1/model/saved_model", "--model_id=age-v2",
                     *accelerator, "--dry_run")
    assert proc.returncode == 0, proc.stderr
    [upload] = json.loads(proc.stdout)
    assert upload["method"] == "ModelServiceClient.upload_model"
    request = v1.UploadModelRequest.from_json(json.dumps(upload["request"]))  # strict: no
    model = request.model                                                       # unknown field
    assert request.parent == "projects/my-proj/locations/us-central1"
    assert model.artifact_uri == "gs://my-bucket/run1/model/saved_model"
    spec = model.container_spec
    assert spec.image_uri == ("us-central1-docker.pkg.dev/my-proj/face-age/tf-serving:"
                              f"{serving.TF_SERVING_VERSION}{suffix}")
    assert list(spec.command) == ["/usr/bin/tensorflow_model_server"]
    # Vertex expands $(AIP_STORAGE_URI) to its copy of artifact_uri; TF Serving then loads
    # the highest numbered version folder below it (deploy.serve puts the model in 1/).
    assert list(spec.args) == ["--model_name=face_age", "--model_base_path=$(AIP_STORAGE_URI)",
                               "--rest_api_port=8501", "--port=8500"]
    assert [p.container_port for p in spec.ports] == [8501]
    assert type(spec.ports[0]) is v1.Port
    assert spec.predict_route == "/v1/models/face_age:predict"
    assert spec.health_route == "/v1/models/face_age"
    assert not spec.env and not spec.grpc_ports


def test_a_serving_image_override_keeps_the_container_kind():
    proc = serve_cli("upload", "--project=my-proj", "--region=us-central1",
                     "--artifact_uri=gs://my-bucket/m", "--model_id=age-v3",
                     "--serving_image=us-docker.pkg.dev/p/r/tfs:2.18.0", "--dry_run")
    spec = json.loads(proc.stdout)[0]["request"]["model"]["containerSpec"]
    assert spec["imageUri"] == "us-docker.pkg.dev/p/r/tfs:2.18.0"
    assert spec["predictRoute"] == "/v1/models/face_age:predict"
    proc = serve_cli("upload", "--project=my-proj", "--region=us-central1",
                     "--artifact_uri=gs://my-bucket/m", "--serving_container=torchserve",
                     "--dry_run")
    assert proc.returncode == 1 and "<tf_serving|prebuilt>" in proc.stderr


def test_versioned_layout_puts_the_trainer_export_in_version_1(gcs_bucket, tmp_path):
    from contract import files

    model = tmp_path / "saved_model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"idx")
    uri = f"gs://{gcs_bucket}/run/model/saved_model"
    files.copy_tree(str(model), uri)
    assert "copied 2 object(s)" in serving.versioned_layout(uri)
    for name in ("saved_model.pb", "variables/variables.index"):
        assert files.exists(f"{uri}/1/{name}") and files.exists(f"{uri}/{name}")  # both layouts
    assert "holds the SavedModel already" in serving.versioned_layout(uri)  # nothing re-copied
    with pytest.raises(ValueError, match="no saved_model.pb there or in 1/"):
        serving.versioned_layout(f"gs://{gcs_bucket}/elsewhere")


def test_deploy_an_existing_model_to_an_existing_endpoint_sends_one_request():
    proc = serve_cli("deploy", "--project=my-proj", "--region=us-central1", "--model=42",
                     "--endpoint=projects/my-proj/locations/us-central1/endpoints/7", "--dry_run")
    assert proc.returncode == 0, proc.stderr
    [deployment] = json.loads(proc.stdout)
    request = deployment["request"]
    assert request["endpoint"] == "projects/my-proj/locations/us-central1/endpoints/7"
    assert request["deployedModel"]["model"] == "projects/my-proj/locations/us-central1/models/42"
    assert request["deployedModel"]["dedicatedResources"]["machineSpec"] == {
        "machineType": "n1-standard-4"}


def test_predict_dry_run_sends_named_b64_instances(tmp_path):
    jpeg = make_image(tmp_path / "a.jpg", "JPEG")
    png = make_image(tmp_path / "b.png", "PNG", seed=1)
    proc = serve_cli("predict", "--project=my-proj", "--region=us-central1", "--endpoint=7",
                     "--dry_run", str(jpeg), str(png))
    assert proc.returncode == 0, proc.stderr
    [call] = json.loads(proc.stdout)
    assert call["method"] == "PredictionServiceClient.predict"
    request = call["request"]
    assert request["endpoint"] == "projects/my-proj/locations/us-central1/endpoints/7"
    # TF Serving REST row format: one object per instance keyed by the signature's input name,
    # binary strings as {"b64": ...}; the bytes are the files' own, undecoded.
    assert [list(i) for i in request["instances"]] == [["image_bytes"], ["image_bytes"]]
    sent = [base64.b64decode(i["image_bytes"]["b64"]) for i in request["instances"]]
    assert sent == [jpeg.read_bytes(), png.read_bytes()]
    assert Image.open(io.BytesIO(sent[0])).format == "JPEG"


def test_predict_splits_requests_under_the_size_limit(tmp_path):
    paths = [make_image(tmp_path / f"{i}.png", "PNG", seed=i) for i in range(5)]
    one = len(serving.instance(paths[0].read_bytes())["image_bytes"]["b64"])
    requests = serving.predict_requests("e", serving.sent_items(paths), max_bytes=int(one * 2.5))
    assert [len(names) for names, _ in requests] == [2, 2, 1]
    assert [n for names, _ in requests for n in names] == [str(p) for p in paths]
    assert all(len(r.instances) == len(names) for names, r in requests)
    with pytest.raises(ValueError, match="over the 100-byte request limit"):
        serving.predict_requests("e", serving.sent_items(paths[:1]), max_bytes=100)


def test_predict_applies_the_input_limits_before_decoding(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    webp = make_image(tmp_path / "c.webp", "WEBP")
    Image.new("RGB", (2000, 20)).save(tmp_path / "strip.png")  # aspect ratio 100
    with pytest.raises(FileNotFoundError, match="missing.jpg does not exist"):
        serving.read_image(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match="is not a regular file"):
        serving.read_image(tmp_path)
    with pytest.raises(ValueError, match="larger than the 100-byte read limit"):
        serving.read_image(webp, max_bytes=100)
    for name, reason in (("notes.txt", "not an image format Pillow can read"),
                         ("strip.png", "refused before decoding: 2000x20 has aspect ratio")):
        with pytest.raises(ValueError, match=f"{name}: .*{reason}"):
            list(serving.sent_items([tmp_path / name]))
    # A header declaring more pixels than the endpoint decodes: refused, nothing decoded.
    huge = bytearray(make_image(tmp_path / "d.png", "PNG").read_bytes())
    huge[16:24] = (5000).to_bytes(4, "big") + (5000).to_bytes(4, "big")  # IHDR width, height
    huge[29:33] = zlib.crc32(huge[12:29]).to_bytes(4, "big")  # the IHDR chunk's CRC
    (tmp_path / "huge.png").write_bytes(bytes(huge))
    with pytest.raises(ValueError, match="huge.png: .*refused before decoding: 5000x5000"):
        list(serving.sent_items([tmp_path / "huge.png"]))
    # What serving_default does not decode goes as PNG, like trainer.predict feeds it.
    [(_, sent)] = serving.sent_items([webp])
    assert Image.open(io.BytesIO(sent)).format == "PNG"
    proc = serve_cli("predict", "--project=my-proj", "--region=us-central1", "--endpoint=7",
                     "--dry_run", str(tmp_path / "notes.txt"))
    assert proc.returncode == 1 and "not an image format Pillow can read" in proc.stderr


@pytest.mark.parametrize("prediction, age", [
    (31.5, 31.5), ([12.0], 12.0), ({"age": 40.0, "distribution": [0.1] * 3}, 40.0),
    ({"age": [7]}, 7.0),
])
def test_age_of_each_output_shape(prediction, age):
    assert serving.age_of(prediction) == age


def test_age_of_rejects_unknown_outputs():
    with pytest.raises(ValueError, match="has no 'age' output"):
        serving.age_of({"score": 1.0})
    with pytest.raises(ValueError, match="is not an age"):
        serving.age_of([1.0, 2.0])


@pytest.mark.parametrize("region", ["us-central1", "europe-west4", "asia-northeast1"])
@pytest.mark.parametrize("gpu", [False, True])
def test_default_serving_image_is_one_the_sdk_knows(region, gpu):
    assert serving.serving_image(region, gpu=gpu) in sdk_prediction.TF_CONTAINER_URIS


def test_serving_errors():
    hw = machines.resolve("n1-standard-4")
    with pytest.raises(ValueError, match="--max_replicas=1 is below --min_replicas=2"):
        serving.deploy_model_request("e", "m", hw, min_replicas=2, max_replicas=1)
    with pytest.raises(ValueError, match="--min_replicas=0"):
        serving.deploy_model_request("e", "m", hw, min_replicas=0)
    with pytest.raises(ValueError, match="--artifact_uri='/tmp/saved_model' must be a gs://"):
        serving.upload_model_request("p", "r", "m1", "/tmp/saved_model", "img")
    with pytest.raises(ValueError, match="--model_id='Age_V1'"):
        serving.upload_model_request("p", "r", "Age_V1", "gs://my-bucket/m", "img")
    with pytest.raises(ValueError, match="names no endpoint"):
        serving.resource_name("endpoints", "projects/p/locations/r/models/1", "p", "r")
    proc = serve_cli("deploy", "--region=us-central1", "--artifact_uri=gs://my-bucket/m",
                     "--dry_run")
    assert proc.returncode == 1 and proc.stderr.strip() == "error: --project is required (the " \
                                                           "Google Cloud project ID)"
    proc = serve_cli("predict", "--project=my-proj", "--region=us-central1", "--dry_run", "a.jpg")
    assert proc.returncode == 1 and "--endpoint is required for predict" in proc.stderr
    proc = serve_cli("launch", "--project=my-proj", "--region=us-central1")
    assert proc.returncode == 1 and "upload, deploy, predict" in proc.stderr


@pytest.mark.parametrize("head", ["regression", "dex"])
def test_predict_instances_feed_the_exported_serving_signature(tmp_path, head):
    """The request format against the trainer's real SavedModel (tiny CNN, random weights).

    TF Serving's row format turns the instances into one batch per input name (b64 decoded),
    and answers with bare values when the signature has one output, objects when it has more.
    """
    import tensorflow as tf

    from trainer.export import export_saved_model
    from trainer.model import build_model

    model = build_model(backbone="tiny", image_size=32, head=head, max_age=100, dropout=0.0,
                        initial_age=30.0)
    path = export_saved_model(model, str(tmp_path / "saved_model"), Framing(32), head, 100)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == [serving.INPUT_NAME]

    images = [make_image(tmp_path / "a.jpg", "JPEG", 48), make_image(tmp_path / "b.png", "PNG")]
    [(_, request)] = serving.predict_requests("e", serving.sent_items(images))
    instances = json.loads(type(request).to_json(request))["instances"]
    batch = tf.constant([base64.b64decode(i[serving.INPUT_NAME]["b64"]) for i in instances])
    outputs = {k: v.numpy().tolist() for k, v in signature(**{serving.INPUT_NAME: batch}).items()}
    if len(outputs) == 1:
        rows = next(iter(outputs.values()))
    else:
        rows = [dict(zip(outputs, values, strict=True)) for values in zip(*outputs.values(),
                                                                          strict=True)]
    ages = [serving.age_of(row) for row in rows]
    assert len(ages) == 2 and all(0.0 <= a <= 100.0 for a in ages)
    stds = [serving.std_of(row) for row in rows]
    if head == "dex":  # the std of the distribution served beside it
        probs = np.array(outputs["age_distribution"])
        mean = (probs * np.arange(101)).sum(1, keepdims=True)
        np.testing.assert_allclose(stds, np.sqrt((probs * (np.arange(101) - mean) ** 2).sum(1)),
                                   rtol=1e-4)
    else:
        assert stds == [None, None]
    # What `predict` prints for these rows: the std column only for dex models.
    out = io.StringIO()
    photos.write_rows([photos.image_row(str(p), a, s) for p, a, s in zip(
        images, ages, stds, strict=True)], as_json=False, out=out)
    header = "file,age,age_std" if head == "dex" else "file,age"
    assert out.getvalue().splitlines()[0] == header


@pytest.mark.parametrize("prediction, std", [
    (31.5, None), ({"age": 40.0}, None), ({"age": 40.0, "age_std": 6.5}, 6.5),
    ({"age": [7], "age_std": [2]}, 2.0),
])
def test_std_of_each_output_shape(prediction, std):
    assert serving.std_of(prediction) == std
    with pytest.raises(ValueError, match="age_std is not a number"):
        serving.std_of({"age": 1.0, "age_std": "wide"})


def test_predict_sends_exif_oriented_photos_upright_and_others_untouched(tmp_path):
    from exif_images import ORIENTATION, save_sideways, upright_face
    from PIL import ImageOps

    face = upright_face()
    sideways = save_sideways(face, tmp_path / "sideways.jpg", 6)
    plain = make_image(tmp_path / "plain.jpg", "JPEG")
    tagged_upright = tmp_path / "tagged_upright.jpg"  # orientation 1: nothing to do
    exif = Image.Exif()
    exif[ORIENTATION] = 1
    face.save(tagged_upright, "JPEG", exif=exif.tobytes())
    proc = serve_cli("predict", "--project=my-proj", "--region=us-central1", "--endpoint=7",
                     "--dry_run", str(sideways), str(plain), str(tagged_upright))
    assert proc.returncode == 0, proc.stderr
    [call] = json.loads(proc.stdout)
    sent = [base64.b64decode(i["image_bytes"]["b64"]) for i in call["request"]["instances"]]
    assert sent[1:] == [plain.read_bytes(), tagged_upright.read_bytes()]  # byte-identical
    with Image.open(io.BytesIO(sent[0])) as served, Image.open(sideways) as stored:
        assert served.format == "PNG" and served.size == face.size == (48, 32)
        assert not served.getexif().get(ORIENTATION)  # nothing left for a viewer to re-rotate
        upright = ImageOps.exif_transpose(stored)
        # Lossless: exactly the pixels PIL shows for the stored file, i.e. the upright face.
        assert np.array_equal(np.asarray(served.convert("RGB")), np.asarray(upright))
    assert np.abs(np.asarray(upright, np.float32) - np.asarray(face, np.float32)).max() < 8


def test_face_model_sends_whole_photos_in_a_raw_predict_naming_the_photo_signature(tmp_path):
    """--face=model: TF Serving's REST predict body, with signature_name, in a RawPredictRequest
    (a PredictRequest has no field for the signature); parsed back strictly with the SDK."""
    from google.cloud import aiplatform_v1 as v1

    photos = [make_image(tmp_path / "a.jpg", "JPEG", 64), make_image(tmp_path / "b.png", "PNG")]
    proc = serve_cli("predict", "--project=my-proj", "--region=us-central1", "--endpoint=7",
                     "--face=model", "--dry_run", *map(str, photos))
    assert proc.returncode == 0, proc.stderr
    [call] = json.loads(proc.stdout)
    assert call["method"] == "PredictionServiceClient.raw_predict"
    request = v1.RawPredictRequest.from_json(json.dumps(call["request"]))
    assert request.endpoint == "projects/my-proj/locations/us-central1/endpoints/7"
    assert request.http_body.content_type == "application/json"
    body = json.loads(request.http_body.data)
    assert body["signature_name"] == serving.PHOTO_SIGNATURE == "predict_photo"
    assert [list(i) for i in body["instances"]] == [["image_bytes"], ["image_bytes"]]
    sent = [base64.b64decode(i["image_bytes"]["b64"]) for i in body["instances"]]
    assert sent == [p.read_bytes() for p in photos]  # whole photos, byte for byte


def test_photo_requests_stay_under_the_size_limit_and_rows_parse(tmp_path):
    paths = [make_image(tmp_path / f"{i}.png", "PNG", seed=i) for i in range(3)]
    one = len(serving.instance(paths[0].read_bytes())["image_bytes"]["b64"])
    requests = serving.photo_requests("e", serving.sent_items(paths), max_bytes=int(one * 2.5))
    assert [len(keys) for keys, _ in requests] == [2, 1]
    assert all(len(r.http_body.data) < one * 2.5 for _, r in requests)
    row = {"boxes": [[1, 2, 3, 4], [0, 0, 0, 0]], "landmarks": [[[1, 1]] * 5, [[0, 0]] * 5],
           "scores": [0.99, 0], "ages": [31.5, 0], "num_faces": 1}
    assert serving.photo_faces(row) == [((1.0, 2.0, 3.0, 4.0), ((1.0, 1.0),) * 5, 0.99, 31.5)]
    with pytest.raises(ValueError, match="no boxes, landmarks, scores, num_faces output"):
        serving.photo_faces({"ages": [1.0]})
