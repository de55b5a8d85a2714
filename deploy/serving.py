"""Vertex AI serving requests (model upload, endpoint, deployment, predict) as SDK messages.

Pure builders used by ``deploy.serve``: the same objects are sent for real or printed by
``--dry_run``, so the tests check exactly what Vertex AI would receive.

Containers. ``tf_serving`` (the default) runs the official TensorFlow Serving image, pinned to
``TF_SERVING_VERSION``, as a Vertex AI custom container: Vertex's prebuilt TF prediction images
stop at TF 2.15 and are being retired, while TF Serving keeps following TensorFlow. Vertex copies
the Model's ``artifact_uri`` and passes the copy as ``$(AIP_STORAGE_URI)``, which becomes
``--model_base_path``; TF Serving serves the highest numbered folder below it, so the SavedModel
must sit in ``<artifact_uri>/1/`` (``deploy.serve`` puts it there, see ``versioned_layout``).
Vertex pulls custom containers from Artifact Registry only, so the image is a copy of
``tensorflow/serving:<version>`` in the project's repository. ``prebuilt`` keeps the prebuilt
image, which loads ``saved_model.pb`` from the artifact folder itself.

Request format. The exported SavedModel's ``serving_default`` signature takes one named input,
``image_bytes``: a batch of encoded JPEG/PNG strings. TF Serving's REST "row" format (which the
prebuilt Vertex AI TensorFlow container speaks) sends one JSON object per instance keyed by input
name, and binary strings as ``{"b64": "<base64>"}``. So each image is
``{"image_bytes": {"b64": "..."}}``. (A signature with a single input also accepts the bare
``{"b64": ...}`` instance; naming the input keeps working if the signature ever grows.)

Input limits and orientation, as trainer.predict: a file is read up to
``contract.limits.MAX_READ_BYTES`` and its header's declared size checked (against
``SERVING_MAX_PIXELS``, the most the endpoint decodes) before anything is decoded.
``serving_default`` decodes with TensorFlow, which ignores EXIF, while preprocessing trained on
photos turned upright; so a file whose EXIF orientation is not 1, or in a format the signature
does not decode (WebP, TIFF, ...), is sent as its upright image re-encoded as lossless PNG
(trainer.orientation.model_bytes); every other file is sent byte for byte.

Whole photos. With ``face=detect|align`` the detector runs on the client and each face crop is
sent as its own PNG instance (trainer.photos). With ``face=model`` each whole photo is sent (as
with ``none``) to the model's ``predict_photo`` signature, which detects and crops in the graph:
a raw predict whose body names the signature (``photo_requests``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from pathlib import Path

from contract import cloud, files, limits
from deploy import machines
from trainer.orientation import model_bytes

INPUT_NAME = "image_bytes"
PHOTO_SIGNATURE = "predict_photo"  # trainer.photo_signature.NAME
# The newest TensorFlow prediction image the aiplatform SDK lists (constants/prediction.py).
DEFAULT_SERVING_TF = "2.15"
CONTAINERS = ("tf_serving", "prebuilt")
TF_SERVING_VERSION = "2.19.1"  # tensorflow/serving release (TensorFlow 2.19 inside)
TF_SERVING_MODEL = "face_age"  # --model_name: part of TF Serving's REST routes
TF_SERVING_REST_PORT = 8501
MODEL_VERSION = "1"  # the folder TF Serving expects under --model_base_path
# Vertex AI rejects online prediction requests above 1.5 MB; stay a little below it.
MAX_REQUEST_BYTES = 1_400_000
_RESOURCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")


def serving_image(region: str, tf_version: str = DEFAULT_SERVING_TF, gpu: bool = False) -> str:
    """The prebuilt TF serving image nearest to ``region`` (us / europe / asia mirrors)."""
    prefix = "europe" if region.startswith("europe") else \
        "asia" if region.startswith(("asia", "australia", "me-")) else "us"
    return (f"{prefix}-docker.pkg.dev/vertex-ai/prediction/tf2-{'gpu' if gpu else 'cpu'}."
            f"{tf_version.replace('.', '-')}:latest")


def tf_serving_image(project: str, region: str, gpu: bool = False,
                     repository: str = "face-age") -> str:
    """Where the pinned tensorflow/serving image is mirrored in the project's Artifact Registry."""
    return (f"{region}-docker.pkg.dev/{project}/{repository}/tf-serving:{TF_SERVING_VERSION}"
            f"{'-gpu' if gpu else ''}")


def container_spec(container: str, image_uri: str):
    """The Model's containerSpec: the prebuilt image as it is, or TF Serving told where
    everything is (Vertex's probes and requests go to the first port)."""
    from google.cloud import aiplatform_v1 as v1

    if container == "prebuilt":
        return v1.ModelContainerSpec(image_uri=image_uri)
    if container != "tf_serving":
        raise ValueError(f"--serving_container={container!r}: must be one of "
                         f"{', '.join(CONTAINERS)}")
    return v1.ModelContainerSpec(
        image_uri=image_uri,
        # The binary itself: the image's entrypoint script reads MODEL_BASE_PATH/MODEL_NAME
        # and appends the model name to the path. Vertex expands $(AIP_STORAGE_URI).
        command=["/usr/bin/tensorflow_model_server"],
        args=[f"--model_name={TF_SERVING_MODEL}", "--model_base_path=$(AIP_STORAGE_URI)",
              f"--rest_api_port={TF_SERVING_REST_PORT}", "--port=8500"],
        ports=[v1.Port(container_port=TF_SERVING_REST_PORT)],
        predict_route=f"/v1/models/{TF_SERVING_MODEL}:predict",
        # 200 once a version is loaded, an error status before: Vertex's readiness check.
        health_route=f"/v1/models/{TF_SERVING_MODEL}")


def versioned_layout(artifact_uri: str) -> str:
    """Makes ``<artifact_uri>/1/`` hold the SavedModel for TF Serving; returns what it did.

    The trainer writes ``MODEL_DIR/saved_model/saved_model.pb``: its objects are copied
    (server-side) to ``saved_model/1/``, and the prebuilt image can still use the folder.
    """
    version = cloud.join(artifact_uri, MODEL_VERSION)
    if files.exists(cloud.join(version, "saved_model.pb")):
        return f"{version}/ holds the SavedModel already"
    if not files.exists(cloud.join(artifact_uri, "saved_model.pb")):
        raise ValueError(f"--artifact_uri={artifact_uri}: no saved_model.pb there or in "
                         f"{MODEL_VERSION}/ (point it at the trainer's MODEL_DIR/saved_model)")
    prefix = artifact_uri.rstrip("/") + "/"
    copied = 0
    for path in files.matching([prefix + "**"]):
        relative = path[len(prefix):]
        if relative.split("/", 1)[0] != MODEL_VERSION:
            files.copy(path, prefix + MODEL_VERSION + "/" + relative)
            copied += 1
    return f"copied {copied} object(s) to {version}/ (TF Serving's version folder)"


def resource_name(kind: str, value: str, project: str, region: str) -> str:
    """``"123"`` or a full ``projects/.../endpoints/123`` -> the full resource name."""
    if value.startswith("projects/"):
        if f"/{kind}/" not in value:
            raise ValueError(f"--{kind[:-1]}={value!r} names no {kind[:-1]} (expected "
                             f"projects/P/locations/R/{kind}/ID or just the ID)")
        return value
    return f"projects/{project}/locations/{region}/{kind}/{value}"


def check_resource_id(value: str, flag: str) -> str:
    if not _RESOURCE_ID.match(value or ""):
        raise ValueError(f"--{flag}={value!r}: use 2-63 lowercase letters, digits and '-', "
                         "starting with a letter")
    return value


def upload_model_request(project: str, region: str, model_id: str, artifact_uri: str,
                         image_uri: str, display_name: str = "", container: str = "prebuilt"):
    from google.cloud import aiplatform_v1 as v1

    cloud.require_gs(artifact_uri, "artifact_uri", "Vertex AI")
    check_resource_id(model_id, "model_id")
    return v1.UploadModelRequest(
        parent=f"projects/{project}/locations/{region}", model_id=model_id,
        model=v1.Model(display_name=display_name or model_id, artifact_uri=artifact_uri,
                       container_spec=container_spec(container, image_uri)))


def create_endpoint_request(project: str, region: str, endpoint_id: str, display_name: str = ""):
    from google.cloud import aiplatform_v1 as v1

    check_resource_id(endpoint_id, "endpoint_id")
    return v1.CreateEndpointRequest(
        parent=f"projects/{project}/locations/{region}", endpoint_id=endpoint_id,
        endpoint=v1.Endpoint(display_name=display_name or endpoint_id))


def deploy_model_request(endpoint: str, model: str, hardware: machines.Hardware,
                         min_replicas: int = 1, max_replicas: int = 1, display_name: str = "",
                         service_account: str = ""):
    from google.cloud import aiplatform_v1 as v1

    from deploy.specs import machine_spec

    if hardware.kind == "tpu":
        raise ValueError("--machine_type: TPU serving is not supported (TF Serving and the "
                         "prebuilt TF image run on CPU or GPU machines)")
    if min_replicas < 1:
        raise ValueError(f"--min_replicas={min_replicas}: must be >= 1")
    if max_replicas < min_replicas:
        raise ValueError(f"--max_replicas={max_replicas} is below --min_replicas={min_replicas}")
    deployed = v1.DeployedModel(
        model=model, display_name=display_name or model.rsplit("/", 1)[-1],
        dedicated_resources=v1.DedicatedResources(
            machine_spec=machine_spec(hardware), min_replica_count=min_replicas,
            max_replica_count=max_replicas))
    if service_account:
        deployed.service_account = service_account
    # "0" is the placeholder for the model being deployed: it gets all the traffic.
    return v1.DeployModelRequest(endpoint=endpoint, deployed_model=deployed,
                                 traffic_split={"0": 100})


def read_image(path: str | Path, max_bytes: int = limits.MAX_READ_BYTES) -> bytes:
    """The file's bytes, refused when missing, not a regular file or over ``max_bytes``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist" if not path.exists() else
                                f"image {path} is not a regular file")
    too_large = ValueError(f"image {path} is larger than the {max_bytes}-byte read limit "
                           "(contract.limits.MAX_READ_BYTES)")
    if path.stat().st_size > max_bytes:  # refused unread...
        raise too_large
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)  # ...and bounded if it grew since
    if len(data) > max_bytes:
        raise too_large
    return data


def instance(data: bytes, input_name: str = INPUT_NAME) -> dict:
    return {input_name: {"b64": base64.b64encode(data).decode("ascii")}}


def sent_items(paths: Sequence[str | Path], face: str = "none", detector=None):
    """(what each instance is, its bytes) for the images, checked as trainer.predict checks them.

    ``face="none"``: one item per file, keyed by its path: the header's declared size against
    contract.limits (SERVING_MAX_PIXELS, what the endpoint decodes) before anything is decoded,
    then upright bytes (trainer.orientation.model_bytes). ``detect``/``align``: the detector
    runs here, on the client, and each face crop is sent as PNG, keyed by (path, index, Face)
    (trainer.photos). Yields (path, None) for a photo without a face.
    """
    if face != "none":
        from trainer import photos

        photos.check_mode(face)
    for path in paths:
        data = read_image(path)
        try:
            if face == "none":
                yield str(path), model_bytes(data, max_pixels=limits.SERVING_MAX_PIXELS)
                continue
            rgb = photos.upright_rgb(data, limits.SERVING_MAX_PIXELS)
        except ValueError as e:  # an ImageError: unreadable, over a limit, undecodable
            raise ValueError(f"image {path}: {e}") from None
        crops = photos.face_crops(rgb, face, detector)
        if not crops:
            yield str(path), None
        for i, (found, crop) in enumerate(crops):
            yield (str(path), i, found), photos.png_bytes(crop)


def _groups(items, input_name: str, max_bytes: int) -> list[tuple[list, list[dict]]]:
    """(key, bytes) items -> [(keys, instances)] under ``max_bytes`` of JSON each."""
    groups: list[tuple[list, list[dict]]] = []
    size = 0
    for key, data in items:
        if data is None:
            continue
        inst = instance(data, input_name)
        item = len(inst[input_name]["b64"]) + len(input_name) + 20  # JSON punctuation
        if item > max_bytes:
            name = key if isinstance(key, str) else f"{key[0]} face {key[1]}"
            raise ValueError(f"image {name} is {item} bytes as base64 JSON, over the "
                             f"{max_bytes}-byte request limit: resize it first")
        if not groups or size + item > max_bytes:
            groups.append(([], []))
            size = 0
        groups[-1][0].append(key)
        groups[-1][1].append(inst)
        size += item
    return groups


def predict_requests(endpoint: str, items, input_name: str = INPUT_NAME,
                     max_bytes: int = MAX_REQUEST_BYTES) -> list[tuple[list, object]]:
    """Groups (key, bytes) items (``sent_items``) into requests under ``max_bytes`` of JSON
    each; items without bytes are skipped. Returns ``[(keys in this request, PredictRequest),
    ...]`` in input order.
    """
    from google.cloud import aiplatform_v1 as v1

    requests = []
    for keys, insts in _groups(items, input_name, max_bytes):
        request = v1.PredictRequest(endpoint=endpoint)
        # proto-plus marshals dicts into google.protobuf.Value on extend (not in the ctor).
        request.instances.extend(insts)
        requests.append((keys, request))
    return requests


def photo_requests(endpoint: str, items, signature: str = PHOTO_SIGNATURE,
                   input_name: str = INPUT_NAME,
                   max_bytes: int = MAX_REQUEST_BYTES) -> list[tuple[list, object]]:
    """Whole photos for the model's ``signature`` (trainer.photo_signature): RawPredictRequests
    whose body is TF Serving's REST predict body, ``{"signature_name", "instances"}`` (a
    PredictRequest cannot name a signature; raw predict hands the body to the container as is).
    """
    from google.api import httpbody_pb2
    from google.cloud import aiplatform_v1 as v1

    requests = []
    for keys, insts in _groups(items, input_name, max_bytes - len(signature) - 40):
        body = json.dumps({"signature_name": signature, "instances": insts}).encode()
        requests.append((keys, v1.RawPredictRequest(endpoint=endpoint, http_body=(
            httpbody_pb2.HttpBody(content_type="application/json", data=body)))))
    return requests


def photo_faces(prediction: dict) -> list[tuple[tuple, tuple, float, float]]:
    """One photo's predict_photo row (TF Serving's row format) -> [(box, landmarks, score,
    age)], the first ``num_faces`` of the padded outputs, largest first."""
    missing = [k for k in ("boxes", "landmarks", "scores", "ages", "num_faces")
               if k not in prediction]
    if missing:
        raise ValueError(f"prediction has no {', '.join(missing)} output(s): is the endpoint "
                         f"serving a model exported with its {PHOTO_SIGNATURE!r} signature?")
    n = int(prediction["num_faces"])
    return [(tuple(map(float, box)), tuple(tuple(map(float, p)) for p in marks), float(score),
             float(age))
            for box, marks, score, age in zip(prediction["boxes"][:n],
                                              prediction["landmarks"][:n],
                                              prediction["scores"][:n], prediction["ages"][:n],
                                              strict=True)]


def age_of(prediction) -> float:
    """One prediction -> an age: a bare number, ``[age]``, or an object with an ``age`` key."""
    value = prediction
    if isinstance(value, dict):
        if "age" not in value:
            raise ValueError(f"prediction {prediction!r} has no 'age' output")
        value = value["age"]
    return _number(value, f"prediction {prediction!r} is not an age")


def std_of(prediction) -> float | None:
    """A prediction's ``age_std`` (dex models: the std of the age distribution), else None."""
    if not isinstance(prediction, dict) or prediction.get("age_std") is None:
        return None
    return _number(prediction["age_std"], f"prediction {prediction!r}: age_std is not a number")


def _number(value, error: str) -> float:
    """A bare number or a one-element list of one (TF Serving's row format) as a float."""
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if not isinstance(value, int | float):
        raise ValueError(error)
    return float(value)
