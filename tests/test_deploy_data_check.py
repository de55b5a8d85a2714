"""submit_training --check_data: stats.json on gs:// (the GCS emulator) against the worker pools."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from contract import files, sharding
from contract.stats import Stats
from deploy import data_check, specs
from preprocessing import fake_records
from trainer import data

REPO = Path(__file__).resolve().parents[1]


def _job(replicas: int, **overrides) -> specs.TrainingJob:
    kwargs = dict(project="my-proj", region="us-central1", display_name="run1",
                  image_uri="r/face-age:v1", machine_type="n1-standard-8",
                  accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1,
                  replica_count=replicas, staging_bucket="gs://my-bucket",
                  trainer_flags=["--data_dir=gs://my-bucket/records", "--batch_size=48"])
    return specs.make_job(**{**kwargs, **overrides})


@pytest.mark.parametrize("num_files, pipelines", [(1, 1), (1, 2), (2, 2), (2, 3), (5, 3),
                                                  (16, 16), (15, 16), (0, 1)])
def test_the_rule_is_the_one_the_trainers_reader_applies(tmp_path, num_files, pipelines):
    """Refused by the check <=> trainer.data.build_dataset refuses pipeline 0 of the same files."""
    out = tmp_path / "d"
    out.mkdir()
    if num_files:
        fake_records.write_dataset(out, counts={"validation": 2 * num_files}, shards=num_files)
    refused = sharding.shard_shortfall("validation", num_files, pipelines) is not None
    context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=0,
                                         num_replicas_in_sync=pipelines)
    try:
        data.build_dataset(str(out), "validation", batch_size=2, image_size=32, training=False,
                           input_context=context)
        reader_refused = False
    except (ValueError, FileNotFoundError):
        reader_refused = True
    assert refused == reader_refused == (num_files < pipelines)


def test_problems_name_the_fix():
    stats = {"splits": {"train": {"count": 800, "num_shards": 2},
                        "validation": {"count": 1, "num_shards": 1}}}
    [train, validation] = data_check.problems(Stats.from_dict(stats), 3)
    assert train.startswith("2 'train' shard(s) cannot feed 3 input pipelines")
    assert "1 would get none" in train
    assert "rerun preprocessing.run with --num_shards=3 or more" in train
    assert "--replica_count<=2" in train
    assert "only 1 record(s)" in validation and "--replica_count<=1" in validation
    assert data_check.problems(Stats.from_dict(stats), 1) == []
    assert data_check.problems(Stats.from_dict({"splits": {"train": {"count": 9}}}), 2)[0].endswith(
        "records no shard count for 'train' (an older preprocessing.run): rerun preprocessing")
    with pytest.raises(ValueError, match="stats.json: field 'splits' is missing"):
        Stats.from_dict({})


def test_only_multi_worker_jobs_have_several_input_pipelines():
    assert data_check.input_pipelines(_job(3)) == 3
    assert data_check.input_pipelines(_job(1, machine_type="a2-highgpu-4g",
                                            accelerator_type="", accelerator_count=0)) == 1


def test_check_reads_stats_json_on_gs(gcs_bucket):
    records = f"gs://{gcs_bucket}/records"
    with pytest.raises(FileNotFoundError, match=f"{records}/stats.json not found"):
        data_check.check(_job(2), records)
    fake_records.write_dataset(records, counts={"train": 8, "validation": 4}, shards=2)
    stats = json.loads(files.read_text(records + "/stats.json"))
    assert stats["splits"]["train"]["num_shards"] == 2
    data_check.check(_job(2), records)
    with pytest.raises(ValueError, match="3 worker.* cannot each read the data"):
        data_check.check(_job(3), records)


def _submit(bucket: str, replicas: int, *flags: str) -> subprocess.CompletedProcess:
    # The emulator fixture set STORAGE_EMULATOR_HOST in os.environ; the child inherits it.
    return subprocess.run(
        [sys.executable, "-m", "deploy.submit_training", "--project=my-proj",
         "--region=us-central1", f"--staging_bucket=gs://{bucket}", "--image_uri=r/face-age:v1",
         "--machine_type=n1-standard-8", "--accelerator_type=NVIDIA_TESLA_T4",
         "--accelerator_count=1", f"--replica_count={replicas}", *flags, "--",
         f"--data_dir=gs://{bucket}/records", "--batch_size=48"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_cli_refuses_before_anything_is_sent(gcs_bucket):
    fake_records.write_dataset(f"gs://{gcs_bucket}/records",
                               counts={"train": 8, "validation": 4}, shards=2)
    # Not a dry run: a request that got past the check would need credentials and fail else.
    refused = _submit(gcs_bucket, 3)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "2 'train' shard(s) cannot feed 3 input pipelines" in refused.stderr
    assert "--num_shards=3" in refused.stderr and "--nocheck_data skips" in refused.stderr
    # A dry run checks only when --check_data is given by name, and then passes or refuses.
    assert _submit(gcs_bucket, 3, "--dry_run").returncode == 0
    assert _submit(gcs_bucket, 3, "--dry_run", "--check_data").returncode == 1
    ok = _submit(gcs_bucket, 2, "--dry_run", "--check_data")
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["customJob"]["jobSpec"]["workerPoolSpecs"]) == 2
