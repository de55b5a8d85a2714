"""What a trainer image was built for, and whether a job's machines can run it.

The Dockerfile builds three variants, tagged ``TAG-VARIANT`` by cloudbuild.yaml: ``gpu`` (CUDA
TensorFlow, the default), ``gpu-rs`` (plus Google's Reduction Server NCCL plugin,
``REDUCTION_SERVER=1``) and ``tpu`` (tensorflow-tpu and libtpu, ``ACCELERATOR=tpu``). The
submitter cannot read the image's labels without registry access, so the kind comes from
``--image_kind`` or else the tag suffix; no suffix means what ``docker build .`` gives: ``gpu``.
"""

from __future__ import annotations

KINDS = ("gpu", "gpu-rs", "tpu")  # no kind's name ends with another's, so suffixes are unique


def tag_of(image_uri: str) -> str:
    """The tag of ``REGISTRY/PATH/NAME:TAG`` ("" for none or a digest)."""
    last = image_uri.rsplit("/", 1)[-1]
    if "@" in last:
        return ""
    return last.partition(":")[2]


def kind_of(image_uri: str, image_kind: str = "") -> str:
    """``--image_kind`` if given, else the kind the tag's suffix names, else ``gpu``."""
    if image_kind:
        if image_kind not in KINDS:
            raise ValueError(f"--image_kind={image_kind}: expected one of {', '.join(KINDS)}")
        return image_kind
    tag = tag_of(image_uri)
    for kind in KINDS:
        if tag == kind or tag.endswith("-" + kind):
            return kind
    return "gpu"


def check(kind: str, image_uri: str, machine_kind: str, machine_type: str,
          reduction_server_count: int) -> None:
    """Raises ValueError, naming the fix, when the image cannot serve the job's machines."""
    seen = f"--image_uri={image_uri} is a {kind} image"
    how = ("(cloudbuild.yaml tags each image TAG-gpu, TAG-gpu-rs or TAG-tpu; --image_kind names "
           "the kind of an image tagged otherwise)")
    if machine_kind == "tpu" and kind != "tpu":
        raise ValueError(f"--machine_type={machine_type} is a TPU, but {seen}: its TensorFlow "
                         "has no TPU support and no libtpu. Build the TPU image (gcloud builds "
                         "submit --config=cloudbuild.yaml --substitutions=_VARIANT=tpu,_TAG=...) "
                         f"and pass it {how}")
    if machine_kind == "gpu" and kind == "tpu":
        raise ValueError(f"--machine_type={machine_type} has GPUs, but {seen} without CUDA: "
                         f"pass the GPU image (_VARIANT=gpu) {how}")
    if reduction_server_count and kind != "gpu-rs":
        raise ValueError(f"--reduction_server_count={reduction_server_count} needs the Reduction "
                         f"Server NCCL plugin in the trainer image, but {seen} without it: NCCL "
                         "would all-reduce as before and the reduction servers would idle. Pass "
                         "an image built with _VARIANT=gpu-rs (docker build --build-arg "
                         f"REDUCTION_SERVER=1), or drop --reduction_server_count {how}")
