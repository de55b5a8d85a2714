# The trainer image Vertex AI runs: `python -m trainer.task FLAGS` on CUDA-enabled TensorFlow.
#
# TensorFlow comes from the base image, which is why setup.py keeps TF in extras: the package is
# installed with its [cloud] extra only (Vertex AI SDK + cloudml-hypertune for tuning trials).
# Keep TF_VERSION inside setup.py's TF_RANGE (a test checks it). Build and push with
# cloudbuild.yaml, or by hand:
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPOSITORY/face-age-trainer:TAG .
ARG TF_VERSION=2.20.0
FROM tensorflow/tensorflow:${TF_VERSION}-gpu

# 1 = install Google's Reduction Server NCCL plugin, needed only with
# `deploy.submit_training --reduction_server_count=N` (multi-worker GPU jobs).
ARG REDUCTION_SERVER=0

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1

RUN if [ "$REDUCTION_SERVER" = "1" ]; then \
      echo "deb https://packages.cloud.google.com/apt google-fast-socket main" \
        > /etc/apt/sources.list.d/google-fast-socket.list && \
      curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | apt-key add - && \
      apt-get update && apt-get install -y --no-install-recommends google-reduction-server && \
      rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app

# Dependencies first, in their own layer: editing code does not reinstall Beam, TFDS and the SDK.
# (With no packages copied yet, this installs only the requirements of setup.py's [cloud].)
COPY setup.py pyproject.toml README.md ./
RUN python -m pip install '.[cloud]'

COPY contract/ contract/
COPY preprocessing/ preprocessing/
COPY trainer/ trainer/
COPY deploy/ deploy/
RUN python -m pip install --no-deps --force-reinstall . && \
    python -c "import tensorflow as tf, trainer.task; print('TensorFlow', tf.__version__)"

ENTRYPOINT ["python", "-m", "trainer.task"]
