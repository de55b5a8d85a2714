"""Face age estimation: Beam preprocessing, tf.distribute trainer, evaluation and Vertex AI deploy.

TensorFlow comes through an extra so that one package serves a laptop (``[cpu]``: tensorflow-cpu)
and the cloud image (whose GPU base image already ships ``tensorflow``; ``[gpu]`` installs it
elsewhere). ``pip install -e '.[cpu,dev]'`` is what ``make test`` runs.
"""

from pathlib import Path

from setuptools import find_packages, setup

TF_RANGE = ">=2.16,<2.22"

setup(
    name="face-age",
    version="0.1.0",
    description="Train, evaluate and serve a face age estimator on your own labelled photos.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["contract", "contract.*", "preprocessing", "preprocessing.*",
                                    "trainer", "trainer.*", "deploy", "deploy.*"]),
    install_requires=[
        "tensorflow-datasets>=4.9,<5",
        "apache-beam[gcp]>=2.60,<3",
        "google-cloud-storage>=2.10,<4",
        "pandas>=2.0,<3",
        "pillow>=10,<13",
        "absl-py>=2.0,<3",
        "google-crc32c>=1.5,<2",  # TFRecord framing checksums in the Beam writer
        "numpy>=1.26,<3",
        "matplotlib>=3.8,<4",
        # tensorflow-cpu 2.21 no longer pulls it in; tf.summary (TensorBoard logs) needs it.
        "tensorboard>=2.16,<2.22",
        # trainer/distribution.py works around a Keras 3.15 multi-worker bug by wrapping one of
        # its internal functions: a Keras release we have not tested must not slip in unnoticed.
        "keras>=3.15,<3.16",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu{TF_RANGE}"],
        "gpu": [f"tensorflow[and-cuda]{TF_RANGE}"],
        "cloud": ["google-cloud-aiplatform>=1.60,<2", "cloudml-hypertune>=0.1.0.dev6"],
        # Face detection (preprocessing.face_detector): MTCNN's networks and weights, MIT. Its
        # joblib (1.6) imports cloudpickle without declaring it.
        "faces": ["mtcnn>=1.0,<2", "cloudpickle>=2"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "ruff>=0.6",
            "gcp-storage-emulator>=2024.8.3",
            "google-cloud-aiplatform>=1.60,<2",
            "pyyaml>=6",
            "mtcnn>=1.0,<2",  # the [faces] extra, for tests/test_faces.py
            "cloudpickle>=2",
            "scikit-image>=0.22",  # its public-domain astronaut portrait: real face for tests
        ],
    },
)
