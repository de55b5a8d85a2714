# The trainer image Vertex AI runs: `python -m trainer.task FLAGS`, in one of three variants.
#
#   docker build -t .../face-age-trainer:TAG-gpu .                                 # CUDA (default)
#   docker build -t .../face-age-trainer:TAG-gpu-rs --build-arg REDUCTION_SERVER=1 .
#   docker build -t .../face-age-trainer:TAG-tpu --build-arg ACCELERATOR=tpu .
#
# cloudbuild.yaml builds them with _VARIANT=gpu|gpu-rs|tpu and tags them TAG-VARIANT, the suffix
# deploy.submit_training reads to refuse an image the job's machines cannot use. Each image also
# records its variant: labels face-age.accelerator / face-age.reduction-server and the same in
# FACE_AGE_ACCELERATOR / FACE_AGE_REDUCTION_SERVER (the trainer refuses a TPU job on a GPU image).
# Needs BuildKit (the default builder of Docker >= 23), which builds only the chosen base stage.
#
# TensorFlow comes from the base stage, which is why setup.py keeps TF in extras: the package is
# installed with its [trainer,cloud] extras (the trainer's libraries; the Vertex AI SDK and
# cloudml-hypertune for tuning trials). Keep TF_VERSION and TF_TPU_VERSION inside setup.py's
# TF_RANGE (a test checks it).
ARG TF_VERSION=2.20.0
# tensorflow-tpu 2.20.0 requires libtpu~=0.0.14: pinned to the release it names, since libtpu's
# later releases follow JAX.
ARG TF_TPU_VERSION=2.20.0
ARG LIBTPU_VERSION=0.0.14
ARG ACCELERATOR=gpu

# --- gpu: CUDA TensorFlow, optionally Google's Reduction Server NCCL plugin ---------------------
FROM tensorflow/tensorflow:${TF_VERSION}-gpu AS base-gpu
# 1 = install the plugin, needed only with `deploy.submit_training --reduction_server_count=N`
# (multi-worker GPU jobs).
ARG REDUCTION_SERVER=0
RUN if [ "$REDUCTION_SERVER" = "1" ]; then \
      echo "deb https://packages.cloud.google.com/apt google-fast-socket main" \
        > /etc/apt/sources.list.d/google-fast-socket.list && \
      curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | apt-key add - && \
      apt-get update && apt-get install -y --no-install-recommends google-reduction-server && \
      rm -rf /var/lib/apt/lists/*; \
    elif [ "$REDUCTION_SERVER" != "0" ]; then \
      echo "REDUCTION_SERVER must be 0 or 1, got $REDUCTION_SERVER" >&2; exit 1; \
    fi

# --- tpu: tensorflow-tpu + libtpu (Vertex AI TPU VMs: v2, v3, v5e) -----------------------------
FROM python:3.11-slim-bookworm AS base-tpu
ARG TF_TPU_VERSION
ARG LIBTPU_VERSION
ARG REDUCTION_SERVER=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Vertex AI's TPU containers load libtpu.so from /lib: link the one the libtpu package installed
# (libtpu/libtpu.so in the 0.0.14 wheel, which get_library_path() names).
RUN if [ "$REDUCTION_SERVER" != "0" ]; then \
      echo "REDUCTION_SERVER=1 is a GPU (NCCL) plugin: build it with ACCELERATOR=gpu" >&2; \
      exit 1; \
    fi && \
    python -m pip install "tensorflow-tpu==${TF_TPU_VERSION}" "libtpu==${LIBTPU_VERSION}" && \
    ln -s "$(python -c 'import libtpu; print(libtpu.get_library_path())')" /lib/libtpu.so && \
    test -f /lib/libtpu.so

# --- the trainer, on the chosen base -------------------------------------------------------------
FROM base-${ACCELERATOR} AS trainer
ARG ACCELERATOR
ARG REDUCTION_SERVER=0
LABEL face-age.accelerator="${ACCELERATOR}" \
      face-age.reduction-server="${REDUCTION_SERVER}"
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    FACE_AGE_ACCELERATOR="${ACCELERATOR}" \
    FACE_AGE_REDUCTION_SERVER="${REDUCTION_SERVER}"

WORKDIR /app

# Dependencies first, in their own layer: editing code does not reinstall Beam, TFDS and the SDK.
# (With no packages copied yet, this installs only the requirements of setup.py's extras.)
COPY setup.py pyproject.toml README.md ./
RUN python -m pip install '.[trainer,cloud]'

COPY contract/ contract/
COPY imaging/ imaging/
COPY preprocessing/ preprocessing/
COPY trainer/ trainer/
COPY deploy/ deploy/
RUN python -m pip install --no-deps --force-reinstall . && \
    python -c "import tensorflow as tf, trainer.task; print('TensorFlow', tf.__version__)"

ENTRYPOINT ["python", "-m", "trainer.task"]
