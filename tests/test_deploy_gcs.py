"""gs:// helpers (contract.cloud, contract.files) on the real local GCS emulator, and the
pre-flight checks built on them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract import cloud, files

REPO = Path(__file__).resolve().parents[1]


def test_parse_and_require():
    assert cloud.parse("gs://my-bucket/a/b.txt") == ("my-bucket", "a/b.txt")
    assert cloud.parse("gs://my-bucket") == ("my-bucket", "")
    assert cloud.join("gs://my-bucket/", "/runs/", "r1") == "gs://my-bucket/runs/r1"
    assert cloud.require_gs("gs://my-bucket/x", "data_dir") == "gs://my-bucket/x"
    with pytest.raises(ValueError, match="--data_dir is required"):
        cloud.require_gs("", "data_dir")
    with pytest.raises(ValueError, match=r"--data_dir='C:\\\\data' must be a gs:// URI"):
        cloud.require_gs("C:\\data", "data_dir")
    with pytest.raises(ValueError, match="'My_Bucket' is not a valid bucket name"):
        cloud.parse("gs://My_Bucket/x", "output_dir")
    with pytest.raises(ValueError, match="is not a gs:// URI"):
        cloud.parse("s3://bucket/x")


def test_upload_download_exists_round_trip(gcs_bucket, tmp_path):
    src = tmp_path / "stats.json"
    src.write_text('{"splits": {}}')
    uri = f"gs://{gcs_bucket}/records/stats.json"
    assert not files.exists(uri)
    assert files.copy(str(src), uri) == uri
    assert files.exists(uri)
    assert files.exists(f"gs://{gcs_bucket}/records")  # a "directory": some object lives below
    assert files.exists(f"gs://{gcs_bucket}/records/")
    assert not files.exists(f"gs://{gcs_bucket}/rec")  # a name prefix is not a directory
    back = files.copy(uri, str(tmp_path / "back" / "stats.json"))
    assert files.read_text(back) == '{"splits": {}}'


def test_upload_dir_keeps_the_tree(gcs_bucket, tmp_path):
    model = tmp_path / "saved_model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"\x08\x01")
    (model / "variables" / "variables.index").write_bytes(b"idx")
    uris = files.copy_tree(str(model), f"gs://{gcs_bucket}/m/saved_model")
    assert uris == [f"gs://{gcs_bucket}/m/saved_model/saved_model.pb",
                    f"gs://{gcs_bucket}/m/saved_model/variables/variables.index"]
    assert files.exists(f"gs://{gcs_bucket}/m/saved_model/saved_model.pb")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        files.copy_tree(str(tmp_path / "nope"), f"gs://{gcs_bucket}/x")


def _cli(module, *args):
    # The emulator fixture set STORAGE_EMULATOR_HOST in os.environ; the child inherits it.
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ))


def test_submit_checks_the_data_dir_before_sending(gcs_bucket):
    proc = _cli("deploy.submit_training", "--project=my-proj", "--region=us-central1",
                f"--staging_bucket=gs://{gcs_bucket}", "--image_uri=r/face-age:v1",
                "--", f"--data_dir=gs://{gcs_bucket}/records")
    assert proc.returncode == 1
    assert f"gs://{gcs_bucket}/records/stats.json not found" in proc.stderr


def test_serve_checks_the_saved_model_before_uploading(gcs_bucket):
    proc = _cli("deploy.serve", "upload", "--project=my-proj", "--region=us-central1",
                f"--artifact_uri=gs://{gcs_bucket}/run1/model/saved_model")
    assert proc.returncode == 1
    assert "no saved_model.pb there" in proc.stderr


def test_emulator_io_skips_the_credential_search(gcs_bucket, monkeypatch):
    # Beam's GCS client would look for credentials the emulator does not take, retrying for
    # ~20-30 s; contract.files tells it up front that there are none.
    import google.auth
    from apache_beam.internal.gcp import auth

    searched = []
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: searched.append(a) or 1 / 0)
    monkeypatch.setattr(auth._Credentials, "_credentials_init", False)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    files.write_text(f"gs://{gcs_bucket}/a.txt", "a")
    assert files.read_text(f"gs://{gcs_bucket}/a.txt") == "a"
    assert searched == []
