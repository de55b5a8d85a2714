"""Vertex AI training and tuning requests, checked field by field (dry runs: no cloud)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.cloud import aiplatform_v1 as v1

from deploy import specs
from trainer import config

REPO = Path(__file__).resolve().parents[1]
IMAGE = "us-central1-docker.pkg.dev/my-proj/face-age/face-age-trainer:v1"
# cloudbuild.yaml's tags for the other variants (an untagged-variant image counts as gpu).
TPU_IMAGE, RS_IMAGE = IMAGE + "-tpu", IMAGE + "-gpu-rs"
BASE = ["--project=my-proj", "--region=us-central1", "--staging_bucket=gs://my-bucket",
        "--display_name=run1"]


def dry_run(*flags, trainer=("--data_dir=gs://my-bucket/records", "--batch_size=64"),
            image=IMAGE):
    """Runs the real CLI with --dry_run and returns the printed request as a dict."""
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.submit_training", *BASE, f"--image_uri={image}", *flags,
         "--dry_run", "--", *trainer], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def job(**overrides):
    kwargs = dict(project="my-proj", region="us-central1", display_name="run1", image_uri=IMAGE,
                  machine_type="n1-standard-8", staging_bucket="gs://my-bucket",
                  trainer_flags=["--data_dir=gs://my-bucket/records", "--batch_size=64"])
    kwargs.update(overrides)
    return specs.make_job(**kwargs)


def check_trainer_container(pool, strategy, extra_args=(), image=IMAGE):
    container = pool["containerSpec"]
    assert container["imageUri"] == image
    assert container["command"] == ["python", "-m", "trainer.task"]
    assert container["args"] == ["--data_dir=gs://my-bucket/records", "--batch_size=64",
                                 f"--distribution_strategy={strategy}", *extra_args]
    assert strategy in config.STRATEGIES


def test_one_gpu_job():
    request = dry_run("--machine_type=n1-standard-8", "--accelerator_type=NVIDIA_TESLA_T4",
                      "--accelerator_count=1",
                      "--service_account=sa@my-proj.iam.gserviceaccount.com")
    assert request["parent"] == "projects/my-proj/locations/us-central1"
    custom_job = request["customJob"]
    assert custom_job["displayName"] == "run1"
    spec = custom_job["jobSpec"]
    # Vertex derives AIP_MODEL_DIR / AIP_CHECKPOINT_DIR / AIP_TENSORBOARD_LOG_DIR from this.
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": "gs://my-bucket/face-age/run1"}
    assert spec["serviceAccount"] == "sa@my-proj.iam.gserviceaccount.com"
    [pool] = spec["workerPoolSpecs"]
    assert pool["replicaCount"] == "1"
    assert pool["machineSpec"] == {"machineType": "n1-standard-8",
                                   "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 1}
    check_trainer_container(pool, "mirrored")
    assert "env" not in pool["containerSpec"]
    assert "scheduling" not in spec


def test_four_gpus_on_one_machine_from_the_machine_type():
    # a2-highgpu-4g comes with 4 A100s: type and count follow from the machine type.
    request = specs.custom_job_request(job(machine_type="a2-highgpu-4g"))
    [pool] = request.custom_job.job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "a2-highgpu-4g"
    assert pool.machine_spec.accelerator_type == v1.AcceleratorType.NVIDIA_TESLA_A100
    assert pool.machine_spec.accelerator_count == 4
    assert pool.replica_count == 1
    assert list(pool.container_spec.args)[-1] == "--distribution_strategy=mirrored"
    assert job(machine_type="a2-highgpu-4g").total_replicas == 4


def test_four_t4s_on_n1():
    j = job(accelerator_type="NVIDIA_TESLA_T4", accelerator_count=4)
    pool = specs.worker_pool_specs(j)[0]
    assert (pool.machine_spec.accelerator_type, pool.machine_spec.accelerator_count) == (
        v1.AcceleratorType.NVIDIA_TESLA_T4, 4)
    assert j.strategy == "mirrored" and j.total_replicas == 4


def test_two_workers_with_two_gpus_each_and_reduction_server_and_env():
    request = dry_run("--machine_type=g2-standard-24", "--replica_count=2",
                      "--reduction_server_count=2", "--env=NCCL_DEBUG=INFO", "--timeout_hours=1.5",
                      "--base_output_dir=gs://other-bucket/runs/r1", image=RS_IMAGE)
    spec = request["customJob"]["jobSpec"]
    assert spec["baseOutputDirectory"]["outputUriPrefix"] == "gs://other-bucket/runs/r1"
    assert spec["scheduling"] == {"timeout": "5400s"}
    chief, workers, reducers = spec["workerPoolSpecs"]
    for pool in (chief, workers):
        assert pool["replicaCount"] == "1"  # 1 chief + 1 worker = --replica_count=2
        assert pool["machineSpec"] == {"machineType": "g2-standard-24",
                                       "acceleratorType": "NVIDIA_L4", "acceleratorCount": 2}
        check_trainer_container(pool, "multi_worker_mirrored", image=RS_IMAGE)
        assert pool["containerSpec"]["env"] == [{"name": "NCCL_DEBUG", "value": "INFO"}]
    assert reducers == {"replicaCount": "2", "machineSpec": {"machineType": "n1-highcpu-16"},
                        "containerSpec": {"imageUri": specs.REDUCTION_SERVER_IMAGE}}


def test_three_workers_put_two_in_the_worker_pool():
    j = job(accelerator_type="NVIDIA_TESLA_V100", accelerator_count=2, replica_count=3,
            trainer_flags=["--data_dir=gs://my-bucket/records", "--batch_size=96"])
    assert [p.replica_count for p in specs.worker_pool_specs(j)] == [1, 2]
    assert j.total_replicas == 6
    assert job(accelerator_type="NVIDIA_TESLA_V100", accelerator_count=2,
               replica_count=4).total_replicas == 8


def test_tpu_v5e_vm_job():
    request = dry_run("--machine_type=ct5lp-hightpu-4t", image=TPU_IMAGE)
    [pool] = request["customJob"]["jobSpec"]["workerPoolSpecs"]
    # TPU VM types name their chips; Vertex takes the topology, not an accelerator type.
    assert pool["machineSpec"] == {"machineType": "ct5lp-hightpu-4t", "tpuTopology": "2x2"}
    check_trainer_container(pool, "tpu", extra_args=("--tpu=local",), image=TPU_IMAGE)


def test_tpu_v3_job():
    request = dry_run("--machine_type=cloud-tpu", "--accelerator_type=TPU_V3",
                      "--accelerator_count=8", image=TPU_IMAGE)
    [pool] = request["customJob"]["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "cloud-tpu", "acceleratorType": "TPU_V3",
                                   "acceleratorCount": 8}
    # Vertex runs v2/v3 on TPU VMs too: the trainer's config check needs --tpu with tpu.
    check_trainer_container(pool, "tpu", extra_args=("--tpu=local",), image=TPU_IMAGE)


# The trainer parses a job's container args with its own flags and config check (as trainer.task
# does at start), for every TPU machine the submitter accepts.
_PARSE_AS_TRAINER = """
import json, sys
from trainer import config, flags
out = []
for args in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["trainer.task", *args])
    cfg = config.from_flags(flags.FLAGS, env={"AIP_MODEL_DIR": "gs://b/model"})
    out.append([cfg.distribution_strategy, cfg.tpu])
print(json.dumps(out))
"""


def test_every_tpu_spec_passes_the_trainer_config_check():
    tpus = [dict(machine_type="cloud-tpu", accelerator_type="TPU_V2", accelerator_count=8),
            dict(machine_type="cloud-tpu", accelerator_type="TPU_V3", accelerator_count=8),
            *(dict(machine_type=f"ct5lp-hightpu-{n}t") for n in (1, 4, 8))]
    args = [list(specs.worker_pool_specs(job(image_uri=TPU_IMAGE, **machine))[0]
                 .container_spec.args) for machine in tpus]
    proc = subprocess.run([sys.executable, "-c", _PARSE_AS_TRAINER, json.dumps(args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == [["tpu", "local"]] * len(tpus)


def test_cpu_job_uses_one_device_and_keeps_an_explicit_matching_strategy():
    j = job(trainer_flags=["--data_dir", "gs://my-bucket/records",
                           "--distribution_strategy=one_device"])
    assert j.trainer_args == ("--data_dir", "gs://my-bucket/records",
                              "--distribution_strategy=one_device")


def test_tuning_job():
    request = dry_run("--machine_type=n1-standard-8", "--accelerator_type=NVIDIA_TESLA_T4",
                      "--accelerator_count=1", "--tune", "--max_trials=20",
                      "--parallel_trials=4", "--tune_params=head_learning_rate=log:1e-4:1e-2",
                      "--tune_params=head=regression|dex", "--tune_params=freeze_epochs=int:1:5",
                      "--tune_params=dropout=discrete:0.0,0.2,0.5")
    tuning = request["hyperparameterTuningJob"]
    assert request["parent"] == "projects/my-proj/locations/us-central1"
    assert tuning["displayName"] == "run1"
    assert (tuning["maxTrialCount"], tuning["parallelTrialCount"]) == (20, 4)
    study = tuning["studySpec"]
    assert study["metrics"] == [{"metricId": "val_mae", "goal": "MINIMIZE"}]
    assert study["measurementSelectionType"] == "BEST_MEASUREMENT"
    assert study["parameters"] == [
        {"parameterId": "head_learning_rate", "scaleType": "UNIT_LOG_SCALE",
         "doubleValueSpec": {"minValue": 1e-4, "maxValue": 1e-2}},
        {"parameterId": "head", "categoricalValueSpec": {"values": ["regression", "dex"]}},
        {"parameterId": "freeze_epochs", "scaleType": "UNIT_LINEAR_SCALE",
         "integerValueSpec": {"minValue": "1", "maxValue": "5"}},
        {"parameterId": "dropout", "discreteValueSpec": {"values": [0.0, 0.2, 0.5]}},
    ]
    trial = tuning["trialJobSpec"]
    assert trial["baseOutputDirectory"]["outputUriPrefix"] == "gs://my-bucket/face-age/run1"
    [pool] = trial["workerPoolSpecs"]
    check_trainer_container(pool, "mirrored")


def test_default_tuning_space_matches_the_trainer_flags():
    request = specs.tuning_job_request(job(), specs.DEFAULT_TUNE_PARAMS)
    params = {p.parameter_id: p for p in request.hyperparameter_tuning_job.study_spec.parameters}
    assert set(params) == {"head_learning_rate", "fine_tune_learning_rate", "head",
                           "sample_weighting"}
    assert tuple(params["head"].categorical_value_spec.values) == config.HEADS
    assert tuple(params["sample_weighting"].categorical_value_spec.values) == config.WEIGHTINGS
    trainer_default = config.Config.__dataclass_fields__["hypertune_metric"].default
    assert trainer_default == specs.DEFAULT_METRIC


@pytest.mark.parametrize("entry, message", [
    ("head_learning_rate=log:0:1e-2", "MIN > 0"),
    ("head_learning_rate=linear:1e-2:1e-4", "MIN must be below MAX"),
    ("head=regression", "two distinct values"),
    ("head=regression|dexx", "accepts only regression, dex"),
    ("lr", "expected NAME="),
    ("epochs=int:1:x", "invalid literal"),
])
def test_bad_tuning_parameters(entry, message):
    with pytest.raises(ValueError, match=message) as info:
        specs.parameter_spec(entry)
    assert entry in str(info.value)


def test_tuned_flag_may_not_also_be_fixed():
    with pytest.raises(ValueError, match="--head_learning_rate are also tuned"):
        job(trainer_flags=["--data_dir=gs://my-bucket/records", "--head_learning_rate=0.1"],
            tuned=["head_learning_rate"])
    with pytest.raises(ValueError, match="more than once"):
        specs.tuned_names(["head=regression|dex", "head=dex|regression"])
    with pytest.raises(ValueError, match="parallel_trials"):
        specs.tuning_job_request(job(), specs.DEFAULT_TUNE_PARAMS, max_trials=2,
                                 parallel_trials=3)
