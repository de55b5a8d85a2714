r"""Serve the exported SavedModel from Vertex AI: upload, deploy to an endpoint, predict.

    python -m deploy.serve upload  --project=P --region=R --artifact_uri=gs://B/run/model/saved_model
    python -m deploy.serve deploy  --project=P --region=R --artifact_uri=gs://.../saved_model \
        [--machine_type=n1-standard-4 --min_replicas=1 --max_replicas=3]
    python -m deploy.serve predict --project=P --region=R --endpoint=ENDPOINT_ID a.jpg b.png
    python -m deploy.serve predict ... --face=detect|align|model [--json] photo.jpg  # per face

``deploy`` uploads the model (unless --model names one already registered), creates an endpoint
(unless --endpoint names one) and deploys the model there with all the traffic. ``predict`` sends
each image as {"image_bytes": {"b64": ...}} and prints ``file,age`` CSV (trainer.predict's
columns and limits, deploy.serving); with ``--face`` the detector runs here and each face crop
is sent, printed as ``file,face,x0,y0,x1,y1,score,age``. Dex models add an ``age_std`` column
(the std of the face's age distribution). ``--face=model`` sends whole photos to the model's
``predict_photo`` signature instead (a raw predict naming it, deploy.serving), for a model
exported with ``--photo_signature``. ``--dry_run`` prints
every request as JSON instead (model and endpoint IDs are chosen up front, so the printed
requests are complete).
"""

from __future__ import annotations

import datetime
import json
import sys

from absl import app, flags

from contract import cloud, files
from deploy import flags as common
from deploy import machines, serving, specs

COMMANDS = ("upload", "deploy", "predict")

ARTIFACT_URI = flags.DEFINE_string(
    "artifact_uri", None, "gs:// directory holding saved_model.pb (the trainer's "
    "MODEL_DIR/saved_model).")
UPLOAD_FROM = flags.DEFINE_string(
    "upload_from", None, "Local SavedModel directory to copy to --artifact_uri first.")
MODEL_ID = flags.DEFINE_string("model_id", None, "ID of the new model; default face-age-TIME.")
MODEL = flags.DEFINE_string("model", None, "deploy: an already uploaded model (ID or name).")
ENDPOINT = flags.DEFINE_string("endpoint", None, "An existing endpoint (ID or resource name).")
ENDPOINT_ID = flags.DEFINE_string("endpoint_id", None, "ID of a new endpoint; default "
                                  "face-age-TIME.")
SERVING_CONTAINER = flags.DEFINE_enum(
    "serving_container", "tf_serving", serving.CONTAINERS,
    "tf_serving: the official TensorFlow Serving image as a custom container (the SavedModel "
    "goes to ARTIFACT_URI/1/); prebuilt: Vertex's prebuilt TF image (stops at TF 2.15, "
    "retiring).")
SERVING_IMAGE = flags.DEFINE_string(
    "serving_image", None, "Serving image; default REGION-docker.pkg.dev/PROJECT/face-age/"
    f"tf-serving:{serving.TF_SERVING_VERSION}[-gpu] (tf_serving) or the prebuilt TF image for "
    "--region (prebuilt).")
SERVING_TF_VERSION = flags.DEFINE_string(
    "serving_tf_version", serving.DEFAULT_SERVING_TF, "TF version of the prebuilt image.")
DEFAULT_MACHINE_TYPE = "n1-standard-4"  # --machine_type itself lives in deploy.flags (shared)
MIN_REPLICAS = flags.DEFINE_integer("min_replicas", 1, "Serving replicas kept up.")
MAX_REPLICAS = flags.DEFINE_integer("max_replicas", 1, "Autoscaling upper bound.")
INPUT_NAME = flags.DEFINE_string("input_name", serving.INPUT_NAME, "Serving signature input.")
FACE = flags.DEFINE_enum(
    "face", "none", ["none", "detect", "align", "model"],  # trainer.photos.FACE_MODES + model
    "predict: none sends each image as one face crop; detect|align runs the face detector here "
    "(the [faces] extra) and sends each face's crop; model sends whole photos to the model's "
    "predict_photo signature (exported with --photo_signature), which detects in the graph. "
    "One output line per face.")
JSON = flags.DEFINE_bool("json", False, "predict: JSON lines instead of CSV.")


def _client(kind: str):
    from google.cloud import aiplatform_v1 as v1

    options = {"api_endpoint": f"{common.REGION.value}-aiplatform.googleapis.com"}
    return getattr(v1, kind)(client_options=options)


def _send(request, method: str, client_kind: str, dry_run: list | None):
    """On a dry run (a list) records the request; otherwise sends it and waits for the result."""
    if dry_run is not None:
        dry_run.append({"method": f"{client_kind}.{method}",
                        "request": json.loads(specs.to_json(request))})
        return None
    response = getattr(_client(client_kind), method)(request=request)
    return response.result() if hasattr(response, "result") else response


def upload(project, region, stamp, dry_run) -> str:
    artifact_uri = cloud.require_gs(ARTIFACT_URI.value, "artifact_uri", "Vertex AI")
    container, gpu = SERVING_CONTAINER.value, bool(common.ACCELERATOR_TYPE.value)
    image = SERVING_IMAGE.value or (
        serving.tf_serving_image(project, region, gpu) if container == "tf_serving" else
        serving.serving_image(region, SERVING_TF_VERSION.value, gpu=gpu))
    request = serving.upload_model_request(project, region, MODEL_ID.value or stamp,
                                           artifact_uri, image, container=container)
    # TF Serving reads ARTIFACT_URI/1/; the prebuilt image reads ARTIFACT_URI itself.
    versioned = container == "tf_serving"
    if UPLOAD_FROM.value and dry_run is None:
        files.copy_tree(UPLOAD_FROM.value, cloud.join(artifact_uri, serving.MODEL_VERSION)
                        if versioned else artifact_uri)
    elif dry_run is None and versioned:
        print(serving.versioned_layout(artifact_uri), file=sys.stderr)
    elif dry_run is None and not files.exists(cloud.join(artifact_uri, "saved_model.pb")):
        raise ValueError(f"--artifact_uri={artifact_uri}: no saved_model.pb there (point it at "
                         "the trainer's MODEL_DIR/saved_model)")
    _send(request, "upload_model", "ModelServiceClient", dry_run)
    return f"{request.parent}/models/{request.model_id}"


def deploy(project, region, stamp, dry_run) -> str:
    hardware = machines.resolve(common.MACHINE_TYPE.value or DEFAULT_MACHINE_TYPE,
                                common.ACCELERATOR_TYPE.value, common.ACCELERATOR_COUNT.value)
    if MODEL.value:
        model = serving.resource_name("models", MODEL.value, project, region)
    else:
        model = upload(project, region, stamp, dry_run)
    if ENDPOINT.value:
        endpoint = serving.resource_name("endpoints", ENDPOINT.value, project, region)
    else:
        request = serving.create_endpoint_request(project, region, ENDPOINT_ID.value or stamp)
        _send(request, "create_endpoint", "EndpointServiceClient", dry_run)
        endpoint = f"{request.parent}/endpoints/{request.endpoint_id}"
    request = serving.deploy_model_request(endpoint, model, hardware, MIN_REPLICAS.value,
                                           MAX_REPLICAS.value,
                                           service_account=common.SERVICE_ACCOUNT.value)
    _send(request, "deploy_model", "EndpointServiceClient", dry_run)
    return endpoint


def predict(project, region, images, dry_run) -> None:
    from trainer import photos

    if not ENDPOINT.value:
        raise ValueError("--endpoint is required for predict (the ID `deploy` printed)")
    if not images:
        raise ValueError("predict needs at least one image path")
    endpoint = serving.resource_name("endpoints", ENDPOINT.value, project, region)
    if FACE.value == "model":
        rows = _predict_in_model(endpoint, images, dry_run)
    else:
        rows = _predict_each(endpoint, images, dry_run)
    if dry_run is None:
        photos.write_rows(rows, JSON.value)


def _predict_each(endpoint, images, dry_run) -> list[dict]:
    """One instance per image (--face=none) or per face crop found here (detect|align)."""
    from google.protobuf import json_format

    from trainer import photos

    items = list(serving.sent_items(images, FACE.value))
    for key, data in items:
        if data is None:
            print(f"no face found in {key}", file=sys.stderr)
    if all(data is None for _, data in items):
        raise ValueError(f"none of the {len(images)} photo(s) gave a face")
    rows = []
    for keys, request in serving.predict_requests(endpoint, items, INPUT_NAME.value):
        response = _send(request, "predict", "PredictionServiceClient", dry_run)
        if response is None:
            continue
        predictions = json_format.MessageToDict(type(response).pb(response))["predictions"]
        for key, prediction in zip(keys, predictions, strict=True):
            age, std = serving.age_of(prediction), serving.std_of(prediction)
            rows.append(photos.image_row(key, age, std) if isinstance(key, str) else
                        photos.face_row(key[0], key[1], key[2], age, std))
    return rows


def _predict_in_model(endpoint, images, dry_run) -> list[dict]:
    """--face=model: whole photos to the model's predict_photo signature (raw predict)."""
    from imaging import faces
    from trainer import photos

    items = list(serving.sent_items(images, "none"))  # the limits and orientation of none
    rows, no_face = [], []
    for keys, request in serving.photo_requests(endpoint, items, input_name=INPUT_NAME.value):
        response = _send(request, "raw_predict", "PredictionServiceClient", dry_run)
        if response is None:
            continue
        predictions = json.loads(response.data)["predictions"]
        for key, prediction in zip(keys, predictions, strict=True):
            found = serving.photo_faces(prediction)
            no_face += [] if found else [key]
            rows.extend(photos.face_row(key, i, faces.Face(box, marks, score), age)
                        for i, (box, marks, score, age) in enumerate(found))
    for key in no_face:
        print(f"no face found in {key}", file=sys.stderr)
    if dry_run is None and not rows:
        raise ValueError(f"none of the {len(images)} photo(s) gave a face")
    return rows


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in COMMANDS:
        sys.exit(f"error: first argument must be one of {', '.join(COMMANDS)}")
    command, rest = argv[1], argv[2:]
    if rest and command != "predict":
        sys.exit(f"error: unexpected arguments {rest} (only predict takes image paths)")
    project, region = common.PROJECT.value, common.REGION.value
    dry_run = [] if common.DRY_RUN.value else None  # the requests a dry run prints
    stamp = "face-age-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    try:
        specs.check_project_region(project, region)
        if command == "upload":
            print(upload(project, region, stamp, dry_run), file=sys.stderr)
        elif command == "deploy":
            print(deploy(project, region, stamp, dry_run), file=sys.stderr)
        else:
            predict(project, region, rest, dry_run)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    if dry_run is not None:
        print(json.dumps(dry_run, indent=2))


if __name__ == "__main__":
    app.run(main)
