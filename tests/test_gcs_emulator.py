"""The emulator fixture itself: a round trip through the real google-cloud-storage client."""

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage


def test_round_trip_through_emulator(gcs_bucket):
    client = storage.Client(project="test-project", credentials=AnonymousCredentials())
    client.bucket(gcs_bucket).blob("a/b.txt").upload_from_string(b"hello")
    names = [b.name for b in client.list_blobs(gcs_bucket, prefix="a/")]
    assert names == ["a/b.txt"]
    assert client.bucket(gcs_bucket).blob("a/b.txt").download_as_bytes() == b"hello"
