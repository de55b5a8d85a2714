"""Shared test set-up: quiet TensorFlow, two logical CPU devices, a local GCS emulator."""

import os
import socket
import threading

import pytest

# Must be set before TensorFlow is first imported by any test module.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy runs with 2 real replicas in-process. This has to
# happen before TensorFlow initialises its runtime, i.e. before any test touches a tensor.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(scope="session")
def mirrored_strategy():
    """ONE MirroredStrategy over the two logical CPUs, shared by every test that needs one.

    Each strategy numbers its collective ops (SyncBatchNorm's all-reduce) from the same start, so a
    second MirroredStrategy in the same process reuses instance keys of the first and the
    collective executor aborts with a shape mismatch. A real job has one strategy per process;
    the tests mirror that by sharing this one.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    return tf.distribute.MirroredStrategy(devices)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """A real GCS JSON API on localhost (gcp-storage-emulator), in memory.

    Sets STORAGE_EMULATOR_HOST for this process, which google-cloud-storage (and Beam's GCS IO,
    built on it) honour. Yields the emulator's base URL. Buckets are created by the tests.
    """
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("localhost", port, in_memory=True)
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    host = f"http://localhost:{port}"
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "test-project")
    try:
        yield host
    finally:
        server.stop()
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old


@pytest.fixture
def gcs_bucket(gcs_emulator, request):
    """A fresh bucket on the emulator; yields its name (use gs://NAME/...)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test-project", credentials=AnonymousCredentials())
    name = "test-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    bucket = client.create_bucket(name)
    yield bucket.name
    for blob in client.list_blobs(bucket.name):
        blob.delete()
    bucket.delete()


@pytest.fixture
def beam_gcs_no_credential_wait(monkeypatch):
    """Beam looks for Google credentials with retries and back-off (~30 s here, no metadata
    server) before it falls back to the anonymous client the emulator needs. Seeding its cache
    with "none found" skips only that wait: every read and write still goes through Beam's real
    GCS IO to the emulator."""
    from apache_beam.internal.gcp import auth

    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
