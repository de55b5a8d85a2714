"""Bad cloud flags fail before any request, with a message that names the flag."""

import subprocess
import sys
from pathlib import Path

import pytest

from deploy import machines, specs

REPO = Path(__file__).resolve().parents[1]
GOOD = dict(project="my-proj", region="us-central1", display_name="run1",
            image_uri="us-central1-docker.pkg.dev/my-proj/r/t:v1", machine_type="n1-standard-8",
            staging_bucket="gs://my-bucket", trainer_flags=["--data_dir=gs://my-bucket/records"])


def make(**overrides):
    return specs.make_job(**{**GOOD, **overrides})


def test_the_good_baseline_is_accepted():
    assert make().strategy == "one_device"


@pytest.mark.parametrize("overrides, message", [
    (dict(project=None), "--project is required"),
    (dict(project="My_Project"), "--project='My_Project' is not a project ID"),
    (dict(region=""), "--region is required"),
    (dict(region="us-central"), "--region='us-central' is not a region"),
    (dict(staging_bucket=None), "--staging_bucket is required"),
    (dict(staging_bucket="/tmp/out"), "--staging_bucket='/tmp/out' must be a gs:// URI"),
    (dict(staging_bucket="gs://B"), "'B' is not a valid bucket name"),
    (dict(base_output_dir="runs/r1"), "--base_output_dir='runs/r1' must be a gs:// URI"),
    (dict(image_uri=""), "--image_uri='' must name a pushed image"),
    (dict(replica_count=0), "--replica_count=0"),
    (dict(env=["NOVALUE"]), "--env='NOVALUE': expected NAME=VALUE"),
    (dict(env=["AIP_MODEL_DIR=gs://x/y"]), "set by Vertex AI itself"),
    (dict(timeout_hours=-1), "--timeout_hours"),
    # Trainer flags passed through after `--`.
    (dict(trainer_flags=[]), "the trainer needs --data_dir"),
    (dict(trainer_flags=["--data_dir=/home/me/records"]), "--data_dir='/home/me/records' must "
                                                          "be a gs:// URI"),
    (dict(trainer_flags=["--data_dir=gs://b1b/r", "--model_dir=./out"]), "--model_dir='./out'"),
    (dict(trainer_flags=["--data_dir=gs://b1b/r", "--weights=/w.h5"]), "--weights='/w.h5'"),
    (dict(trainer_flags=["--data_dir=gs://b1b/r", "records"]), "'records' is not a --flag"),
    (dict(trainer_flags=["--data_dir=gs://b1b/r", "--distribution_strategy=mirrored"]),
     "--distribution_strategy=mirrored contradicts the worker pools, which need "
     "--distribution_strategy=one_device"),
    (dict(trainer_flags=["--data_dir=gs://b1b/r", "--batch_size=30"], machine_type="a2-highgpu-4g"),
     "--batch_size=30 is the GLOBAL batch and must be a multiple of the 4 replicas"),
    (dict(trainer_flags=["--data_dir=gs://b1b/r", "--batch_size=lots"]), "is not an integer"),
    (dict(machine_type="a2-highgpu-4g", replica_count=3),  # no --batch_size: the default 64
     "--batch_size=64 (the trainer's default; pass --batch_size after `--`) is the GLOBAL "
     "batch and must be a multiple of the 12 replicas"),
    (dict(trainer_flags=["--data_dir=gs://b1b/r", "--weights=ImageNet"]), "--weights='ImageNet'"),
    # Pools.
    (dict(machine_type="cloud-tpu", accelerator_type="TPU_V3", accelerator_count=8,
          replica_count=2), "a TPU job runs on one TPU host"),
    (dict(reduction_server_count=1), "--reduction_server_count needs GPU workers"),
    (dict(accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1, replica_count=2,
          reduction_server_count=1, reduction_server_machine_type="bogus"),
     "--reduction_server_machine_type=bogus"),
])
def test_bad_job_flags(overrides, message):
    with pytest.raises(ValueError) as info:
        make(**overrides)
    assert message in str(info.value)


@pytest.mark.parametrize("machine, accelerator, count, message", [
    ("n1-standard-8", "NVIDIA_TESLA_A100", 1, "NVIDIA_TESLA_A100 needs a2-highgpu"),
    ("n1-standard-8", "NVIDIA_L4", 1, "NVIDIA_L4 needs g2-standard-*"),
    ("g2-standard-8", "NVIDIA_TESLA_T4", 1,
     "--accelerator_type=NVIDIA_TESLA_T4 does not fit --machine_type=g2-standard-8"),
    ("a2-highgpu-1g", "", 2, "--accelerator_count=2 does not fit --machine_type=a2-highgpu-1g"),
    ("e2-standard-8", "NVIDIA_TESLA_T4", 1, "attaches only to n1-standard-*"),
    ("n1-standard-8", "NVIDIA_TESLA_T4", 3, "--accelerator_count=3 is not allowed for "
                                           "NVIDIA_TESLA_T4: use one of 1, 2, 4"),
    ("n1-standard-8", "NVIDIA_TESLA_T4", 0, "--accelerator_count=0 is not allowed"),
    ("n1-standard-8", "", 2, "--accelerator_count=2 given without --accelerator_type"),
    ("n1-standard-8", "NVIDIA_TESLA_K80", 1, "retired"),
    ("n1-standard-8", "NVIDIA_GTX_1080", 1, "Known accelerator types"),
    ("n1-standard-8", "TPU_V3", 8, "TPU_V2/TPU_V3 need --machine_type=cloud-tpu"),
    ("cloud-tpu", "TPU_V3", 4, "set --accelerator_count=8"),
    ("cloud-tpu", "", 0, "cloud-tpu needs --accelerator_type=TPU_V2 or TPU_V3"),
    ("ct5lp-hightpu-4t", "TPU_V5_LITEPOD", 4, "leave --accelerator_type"),
    ("a2-highgpu-3g", "", 0, "not a machine type this tool knows"),
    ("", "", 0, "--machine_type is required"),
])
def test_accelerator_must_fit_the_machine(machine, accelerator, count, message):
    with pytest.raises(ValueError) as info:
        machines.resolve(machine, accelerator, count)
    assert message in str(info.value)


def test_topology_must_fit_the_tpu_vm():
    assert machines.resolve("ct5lp-hightpu-8t").tpu_topology == "2x4"
    with pytest.raises(ValueError, match="--tpu_topology=4x4 does not fit"):
        machines.resolve("ct5lp-hightpu-8t", tpu_topology="4x4")
    with pytest.raises(ValueError, match="only applies to TPU"):
        machines.resolve("n1-standard-8", tpu_topology="2x2")


@pytest.mark.parametrize("machine, accelerator, count, expected", [
    ("a2-ultragpu-8g", "", 0, ("NVIDIA_A100_80GB", 8)),
    ("a3-highgpu-8g", "NVIDIA_H100_80GB", 8, ("NVIDIA_H100_80GB", 8)),
    ("g2-standard-48", "", 0, ("NVIDIA_L4", 4)),
    ("n1-highmem-16", "nvidia_tesla_v100", 8, ("NVIDIA_TESLA_V100", 8)),
])
def test_good_machines(machine, accelerator, count, expected):
    hw = machines.resolve(machine, accelerator, count)
    assert (hw.accelerator_type, hw.accelerator_count) == expected
    assert hw.replicas == expected[1]


def test_cli_errors_exit_nonzero_naming_the_flag():
    """The real command: no traceback, one line naming the flag, nothing sent."""
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.submit_training", "--project=my-proj",
         "--region=us-central1", "--staging_bucket=/data/out", "--image_uri=r/i:t",
         "--dry_run", "--", "--data_dir=gs://my-bucket/records"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == (
        "error: --staging_bucket='/data/out' must be a gs:// URI: Vertex AI cannot read a local "
        "path (copy it first, e.g. `gcloud storage cp -r /data/out gs://BUCKET/`)")


def test_every_deploy_command_can_be_imported_into_one_process():
    """Shared flag names (--machine_type, ...) are declared once, in deploy.flags: absl refuses a
    second declaration, so two commands declaring one would break any tool importing both."""
    proc = subprocess.run(
        [sys.executable, "-c", "import deploy.serve, deploy.submit_training, deploy.dataflow"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]
