r"""Submit the trainer image to Vertex AI: one GPU, many GPUs, several workers, a TPU, or tuning.

    python -m deploy.submit_training --project=P --region=us-central1 --staging_bucket=gs://B \
        --image_uri=REGION-docker.pkg.dev/P/REPO/face-age-trainer:TAG --machine_type=... \
        [--accelerator_type=... --accelerator_count=N] [--replica_count=2] [--tune] [--dry_run] \
        -- --data_dir=gs://B/records --backbone=resnet50 --batch_size=64

After ``--``: ``trainer.task``'s flags, plus the ``--distribution_strategy`` the pools imply.
Refused before anything is sent (``--dry_run`` prints it): an image built for other machines
(deploy.image_kind), workers that could not each read shards of every split (``--check_data``).
"""

from __future__ import annotations

import datetime
import sys

from absl import app, flags

from deploy import data_check, image_kind, specs, trainer_args
from deploy import flags as common

DEFAULT_MACHINE_TYPE = "n1-standard-8"  # --machine_type itself lives in deploy.flags (shared)
STAGING_BUCKET = flags.DEFINE_string(
    "staging_bucket", None, "gs://BUCKET for job outputs (base_output_dir defaults below it).")
IMAGE_URI = flags.DEFINE_string(
    "image_uri", None, "Trainer image in Artifact Registry (built from the Dockerfile).")
IMAGE_KIND = flags.DEFINE_enum(
    "image_kind", "", ["", *image_kind.KINDS], "What --image_uri was built for: gpu, gpu-rs "
    "(with the Reduction Server plugin) or tpu; empty = from the tag's suffix (cloudbuild.yaml "
    "tags TAG-gpu, TAG-gpu-rs, TAG-tpu), gpu for a tag without one.")
DISPLAY_NAME = flags.DEFINE_string(
    "display_name", None, "Job name; default face-age-YYYYmmdd-HHMMSS (UTC).")
TPU_TOPOLOGY = flags.DEFINE_string(
    "tpu_topology", "", "TPU VM topology (default from the machine type, e.g. 2x2).")
REPLICA_COUNT = flags.DEFINE_integer(
    "replica_count", 1, "Machines in total: 1 chief + (N-1) workers, MultiWorkerMirrored.")
REDUCTION_SERVER_COUNT = flags.DEFINE_integer(
    "reduction_server_count", 0, "Reduction Server replicas for multi-worker GPU jobs (0=off).")
REDUCTION_SERVER_MACHINE_TYPE = flags.DEFINE_string(
    "reduction_server_machine_type", "n1-highcpu-16", "Machine of each Reduction Server.")
BASE_OUTPUT_DIR = flags.DEFINE_string(
    "base_output_dir", None, "gs:// dir Vertex derives AIP_MODEL_DIR / AIP_CHECKPOINT_DIR / "
    "AIP_TENSORBOARD_LOG_DIR from; default STAGING_BUCKET/face-age/DISPLAY_NAME.")
ENV = flags.DEFINE_multi_string("env", [], "NAME=VALUE environment variable for the trainer.")
TIMEOUT_HOURS = flags.DEFINE_float("timeout_hours", 0.0, "Job timeout (0 = Vertex default).")
TUNE = flags.DEFINE_bool("tune", False, "Submit a HyperparameterTuningJob instead of a job.")
TUNE_PARAMS = flags.DEFINE_multi_string(
    "tune_params", list(specs.DEFAULT_TUNE_PARAMS),
    "Tuned trainer flags: NAME=log:MIN:MAX | linear:MIN:MAX | int:MIN:MAX | discrete:A,B | A|B.")
TUNE_METRIC = flags.DEFINE_string(
    "tune_metric", specs.DEFAULT_METRIC, "hypertune tag the trainer reports (minimised).")
MAX_TRIALS = flags.DEFINE_integer("max_trials", 12, "Tuning: trials in total.")
PARALLEL_TRIALS = flags.DEFINE_integer("parallel_trials", 3, "Tuning: trials at once.")
MAX_FAILED_TRIALS = flags.DEFINE_integer("max_failed_trials", 0, "Tuning: 0 = Vertex default.")
CHECK_DATA = flags.DEFINE_bool(
    "check_data", True, "Before submitting, read DATA_DIR/stats.json and refuse a job whose "
    "workers cannot each get shards of every split (needs GCS access; with --dry_run only when "
    "given explicitly).")


def build_request(trainer_flags: list[str]):
    """Flags -> the validated request message (CreateCustomJob or CreateHyperparameterTuningJob)."""
    tune_params = TUNE_PARAMS.value if TUNE.value else []
    display_name = DISPLAY_NAME.value or "face-age-" + datetime.datetime.now(
        datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    job = specs.make_job(
        project=common.PROJECT.value, region=common.REGION.value, display_name=display_name,
        image_uri=IMAGE_URI.value, machine_type=common.MACHINE_TYPE.value or DEFAULT_MACHINE_TYPE,
        accelerator_type=common.ACCELERATOR_TYPE.value,
        accelerator_count=common.ACCELERATOR_COUNT.value,
        tpu_topology=TPU_TOPOLOGY.value, replica_count=REPLICA_COUNT.value,
        staging_bucket=STAGING_BUCKET.value, base_output_dir=BASE_OUTPUT_DIR.value,
        trainer_flags=trainer_flags, env=ENV.value, service_account=common.SERVICE_ACCOUNT.value,
        reduction_server_count=REDUCTION_SERVER_COUNT.value,
        reduction_server_machine_type=REDUCTION_SERVER_MACHINE_TYPE.value,
        timeout_hours=TIMEOUT_HOURS.value, tuned=specs.tuned_names(tune_params),
        image_kind_flag=IMAGE_KIND.value)
    if TUNE.value:
        return job, specs.tuning_job_request(
            job, tune_params, TUNE_METRIC.value, MAX_TRIALS.value, PARALLEL_TRIALS.value,
            MAX_FAILED_TRIALS.value)
    return job, specs.custom_job_request(job)


def submit(job: specs.TrainingJob, request) -> str:
    """Sends the request with the caller's Application Default Credentials."""
    from google.cloud import aiplatform_v1 as v1

    client = v1.JobServiceClient(
        client_options={"api_endpoint": f"{job.region}-aiplatform.googleapis.com"})
    if TUNE.value:
        return client.create_hyperparameter_tuning_job(request=request).name
    return client.create_custom_job(request=request).name


def main(argv: list[str]) -> None:
    try:
        job, request = build_request(argv[1:])
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"{job.display_name}: {job.replica_count} x {job.hardware.machine_type} "
          f"({job.hardware.kind}, {job.total_replicas} replicas, "
          f"--distribution_strategy={job.strategy}, {job.image_kind} image); outputs under "
          f"{job.base_output_dir}", file=sys.stderr)
    # A dry run stays offline unless --check_data is asked for by name.
    if CHECK_DATA.value and (not common.DRY_RUN.value or flags.FLAGS["check_data"].present):
        try:
            data_check.check(job, trainer_args.parse(job.trainer_args)["data_dir"])
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e} (--nocheck_data skips this check)")
    if common.DRY_RUN.value:
        print(specs.to_json(request))
        return
    print(submit(job, request))


if __name__ == "__main__":
    app.run(main)
