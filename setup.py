"""Face age estimation: Beam preprocessing, tf.distribute trainer, evaluation and Vertex AI deploy.

The base requirements are exactly what the Beam job (``preprocessing.run``) imports, because
Dataflow installs this package on every worker from this file: nothing there may pull the
trainer's libraries (a test checks the job's imports against this list). The trainer's come
through extras, so that one package serves a laptop (``[cpu]``: tensorflow-cpu + ``[trainer]``),
a GPU machine (``[gpu]``) and the cloud image, whose base stage already ships TensorFlow
(``[trainer,cloud]``). ``pip install -e '.[cpu,dev]'`` is what ``make test`` runs.
"""

from pathlib import Path

from setuptools import find_packages, setup

TF_RANGE = ">=2.16,<2.22"

# What the Beam job imports (and nothing else): Dataflow workers install these.
WORKER = [
    # preprocessing/runners.py builds the FnApiRunner itself (fn_runner.FnApiRunner,
    # ExtendedProvisionInfo, portable_runner.JobServiceHandle.encode_pipeline_options), and
    # contract/files.py seeds apache_beam.internal.gcp.auth._Credentials under the GCS
    # emulator: Beam internals, so a Beam minor we have not tested must not slip in unnoticed.
    # Its [gcp] extra also brings google-cloud-storage (preprocessing/lock.py on gs://).
    "apache-beam[gcp]>=2.77,<2.78",
    "pillow>=10,<13",
    "numpy>=1.26,<3",
    "google-crc32c>=1.5,<2",  # TFRecord framing checksums in the Beam writer
    # The flags of preprocessing.synthetic (the sample data a job is tried on) and of every
    # other command; 130 KB, no dependencies of its own.
    "absl-py>=2.0,<3",
]
# The trainer, evaluation and predict commands, on top of a TensorFlow from [cpu], [gpu] or
# the image's base stage.
TRAINER = [
    "tensorflow-datasets>=4.9,<5",
    "pandas>=2.0,<3",
    "matplotlib>=3.8,<4",
    # tensorflow-cpu 2.21 no longer pulls it in; tf.summary (TensorBoard logs) needs it.
    "tensorboard>=2.16,<2.22",
    # trainer/distribution.py works around a Keras 3.15 multi-worker bug by wrapping one of
    # its internal functions: a Keras release we have not tested must not slip in unnoticed.
    "keras>=3.15,<3.16",
]
# The deploy commands (Vertex AI requests) and tuning trials' metric reports. Their gs:// IO
# goes through contract.files (Beam's GCS client, from the base requirements).
CLOUD = [
    "google-cloud-aiplatform>=1.60,<2",
    "cloudml-hypertune>=0.1.0.dev6",
]
# Face detection (imaging.face_detector): MTCNN's networks and weights, MIT. Its joblib
# (1.6) imports cloudpickle without declaring it.
FACES = ["mtcnn>=1.0,<2", "cloudpickle>=2"]

setup(
    name="face-age",
    version="0.1.0",
    description="Train, evaluate and serve a face age estimator on your own labelled photos.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["contract", "contract.*", "imaging", "imaging.*",
                                    "preprocessing", "preprocessing.*", "trainer", "trainer.*",
                                    "deploy", "deploy.*"]),
    install_requires=WORKER,
    extras_require={
        "trainer": TRAINER,
        "cpu": [f"tensorflow-cpu{TF_RANGE}", *TRAINER],
        "gpu": [f"tensorflow[and-cuda]{TF_RANGE}", *TRAINER],
        "cloud": CLOUD,
        "faces": FACES,
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.5",  # make test runs the suite on TEST_WORKERS processes
            "ruff>=0.6",
            "import-linter>=2.1",  # make lint: the layers in pyproject.toml
            "gcp-storage-emulator>=2024.8.3",
            "pyyaml>=6",
            *CLOUD,
            *FACES,  # tests/test_faces.py
            "scikit-image>=0.22",  # its public-domain astronaut portrait: real face for tests
        ],
    },
)
