"""Vertex AI training and tuning requests, built as the SDK's own proto messages.

``make_job`` turns flag values into a frozen, validated ``TrainingJob``; ``custom_job_request``
and ``tuning_job_request`` turn that into ``aiplatform_v1`` request messages, which are what
``deploy.submit_training`` sends and what ``--dry_run`` prints. Pure functions: no credentials,
no network, so the tests check the requests field by field.

Pool layout (Vertex AI's convention; it derives TF_CONFIG from it): pool 0 is the chief, one
replica; pool 1 the other workers; pool 2 the Reduction Server; pool 3 evaluators (unused).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from contract import cloud
from contract.cloud import check_project_region  # also used as specs.* by deploy.serve
from deploy import image_kind, machines, trainer_args

REDUCTION_SERVER_IMAGE = "us-docker.pkg.dev/vertex-ai-restricted/training/reductionserver:latest"
TRAINER_COMMAND = ("python", "-m", "trainer.task")
DEFAULT_METRIC = "val_mae"  # the hypertune tag the trainer reports after each epoch
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DISPLAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    project: str
    region: str
    display_name: str
    image_uri: str
    image_kind: str
    hardware: machines.Hardware
    replica_count: int
    base_output_dir: str
    trainer_args: tuple[str, ...]
    strategy: str
    env: tuple[tuple[str, str], ...] = ()
    service_account: str = ""
    reduction_server_count: int = 0
    reduction_server_machine_type: str = "n1-highcpu-16"
    timeout_hours: float = 0.0

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def total_replicas(self) -> int:
        return self.replica_count * self.hardware.replicas


def strategy_for(hardware: machines.Hardware, replica_count: int) -> str:
    """The trainer's --distribution_strategy that matches the pools."""
    if hardware.kind == "tpu":
        return "tpu"
    if replica_count > 1:
        return "multi_worker_mirrored"
    return "mirrored" if hardware.kind == "gpu" else "one_device"


def make_job(*, project, region, display_name, image_uri, machine_type, accelerator_type="",
             accelerator_count=0, tpu_topology="", replica_count=1, staging_bucket=None,
             base_output_dir=None, trainer_flags: Sequence[str] = (), env: Sequence[str] = (),
             service_account="", reduction_server_count=0,
             reduction_server_machine_type="n1-highcpu-16", timeout_hours=0.0,
             tuned: Sequence[str] = (), image_kind_flag: str = "") -> TrainingJob:
    """Validates every flag value, in the order a user would fix them, and freezes the job."""
    check_project_region(project, region)
    cloud.require_gs(staging_bucket, "staging_bucket", "Vertex AI")
    if not display_name or not _DISPLAY_NAME.match(display_name):
        raise ValueError(f"--display_name={display_name!r}: use letters, digits, '-', '_', '.'")
    if not image_uri or "/" not in image_uri:
        raise ValueError(f"--image_uri={image_uri!r} must name a pushed image, e.g. "
                         f"{region}-docker.pkg.dev/{project}/REPOSITORY/face-age-trainer:TAG")
    hardware = machines.resolve(machine_type, accelerator_type, accelerator_count, tpu_topology)
    if replica_count < 1:
        raise ValueError(f"--replica_count={replica_count}: must be >= 1")
    if hardware.kind == "tpu" and replica_count != 1:
        raise ValueError(f"--replica_count={replica_count}: a TPU job runs on one TPU host "
                         "(replica_count=1); pick a larger TPU machine instead")
    if reduction_server_count < 0:
        raise ValueError(f"--reduction_server_count={reduction_server_count}: must be >= 0")
    if reduction_server_count and (hardware.kind != "gpu" or replica_count < 2):
        raise ValueError("--reduction_server_count needs GPU workers and --replica_count >= 2: "
                         "the Reduction Server speeds up NCCL all-reduce between GPU machines")
    if reduction_server_count:
        machines.resolve(reduction_server_machine_type, flag_prefix="reduction_server_")
    kind = image_kind.kind_of(image_uri, image_kind_flag)
    image_kind.check(kind, image_uri, hardware.kind, hardware.machine_type, reduction_server_count)
    if timeout_hours < 0:
        raise ValueError(f"--timeout_hours={timeout_hours}: must be >= 0 (0 = Vertex default)")
    base_output_dir = base_output_dir or cloud.join(staging_bucket, "face-age", display_name)
    cloud.require_gs(base_output_dir, "base_output_dir", "Vertex AI")
    strategy = strategy_for(hardware, replica_count)
    # Vertex AI runs every TPU job (cloud-tpu v2/v3 and ct5lp v5e alike) on a TPU VM, whose TPU
    # is local to the replica; the trainer's config check needs --tpu with the tpu strategy.
    defaults = {"tpu": "local"} if hardware.kind == "tpu" else {}
    total = replica_count * hardware.replicas
    args = trainer_args.check(trainer_flags, strategy, total, tuned, defaults)
    return TrainingJob(
        project=project, region=region, display_name=display_name, image_uri=image_uri,
        image_kind=kind, hardware=hardware, replica_count=replica_count,
        base_output_dir=base_output_dir, trainer_args=args, strategy=strategy, env=_parse_env(env),
        service_account=service_account or "", reduction_server_count=reduction_server_count,
        reduction_server_machine_type=reduction_server_machine_type, timeout_hours=timeout_hours)


def _parse_env(env: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in env:
        name, eq, value = item.partition("=")
        if not eq or not _ENV_NAME.match(name):
            raise ValueError(f"--env={item!r}: expected NAME=VALUE")
        if name.startswith(("AIP_", "TF_CONFIG", "CLUSTER_SPEC")):
            raise ValueError(f"--env={item!r}: {name} is set by Vertex AI itself")
        out.append((name, value))
    return tuple(out)


def machine_spec(hardware: machines.Hardware):
    from google.cloud import aiplatform_v1 as v1

    spec = v1.MachineSpec(machine_type=hardware.machine_type)
    if hardware.accelerator_type:
        spec.accelerator_type = v1.AcceleratorType[hardware.accelerator_type]
        spec.accelerator_count = hardware.accelerator_count
    if hardware.tpu_topology:
        spec.tpu_topology = hardware.tpu_topology
    return spec


def worker_pool_specs(job: TrainingJob) -> list:
    from google.cloud import aiplatform_v1 as v1

    def trainer_pool(replicas: int):
        container = v1.ContainerSpec(
            image_uri=job.image_uri, command=list(TRAINER_COMMAND), args=list(job.trainer_args),
            env=[v1.EnvVar(name=k, value=v) for k, v in job.env])
        return v1.WorkerPoolSpec(container_spec=container, machine_spec=machine_spec(job.hardware),
                                 replica_count=replicas)

    pools = [trainer_pool(1)]
    if job.replica_count > 1:
        pools.append(trainer_pool(job.replica_count - 1))
    if job.reduction_server_count:
        pools.append(v1.WorkerPoolSpec(
            container_spec=v1.ContainerSpec(image_uri=REDUCTION_SERVER_IMAGE),
            machine_spec=v1.MachineSpec(machine_type=job.reduction_server_machine_type),
            replica_count=job.reduction_server_count))
    return pools


def custom_job_spec(job: TrainingJob):
    from google.cloud import aiplatform_v1 as v1

    spec = v1.CustomJobSpec(
        worker_pool_specs=worker_pool_specs(job),
        # Vertex derives AIP_MODEL_DIR (<dir>/model), AIP_CHECKPOINT_DIR (<dir>/checkpoints) and
        # AIP_TENSORBOARD_LOG_DIR (<dir>/logs) from this; the trainer's path flags default to them.
        base_output_directory=v1.GcsDestination(output_uri_prefix=job.base_output_dir))
    if job.service_account:
        spec.service_account = job.service_account
    if job.timeout_hours:
        from google.protobuf import duration_pb2

        spec.scheduling = v1.Scheduling(
            timeout=duration_pb2.Duration(seconds=int(job.timeout_hours * 3600)))
    return spec


def custom_job_request(job: TrainingJob):
    from google.cloud import aiplatform_v1 as v1

    return v1.CreateCustomJobRequest(
        parent=job.parent,
        custom_job=v1.CustomJob(display_name=job.display_name, job_spec=custom_job_spec(job)))


# --- hyperparameter tuning ------------------------------------------------------------------

DEFAULT_TUNE_PARAMS = (
    "head_learning_rate=log:1e-4:1e-2",
    "fine_tune_learning_rate=log:1e-6:1e-4",
    "head=regression|dex",
    "sample_weighting=none|inverse_frequency|lds",
)


def parameter_spec(text: str):
    """One ``--tune_params`` entry -> ``StudySpec.ParameterSpec``.

    ``NAME=log:MIN:MAX`` / ``NAME=linear:MIN:MAX`` (float), ``NAME=int:MIN:MAX``,
    ``NAME=discrete:V1,V2,...`` (numbers), ``NAME=A|B|C`` (categorical). NAME is a trainer flag;
    Vertex passes each trial's value as ``--NAME=VALUE`` after the container args.
    """
    from google.cloud import aiplatform_v1 as v1

    P = v1.StudySpec.ParameterSpec
    name, eq, rule = text.partition("=")
    if not eq or not re.match(r"^[a-z][a-z0-9_]*$", name) or not rule:
        raise ValueError(f"--tune_params entry {text!r}: expected NAME=log:MIN:MAX, "
                         "NAME=linear:MIN:MAX, NAME=int:MIN:MAX, NAME=discrete:A,B or NAME=A|B")
    kind, _, rest = rule.partition(":")
    try:
        if kind in ("log", "linear", "int"):
            lo_text, _, hi_text = rest.partition(":")
            cast = int if kind == "int" else float
            lo, hi = cast(lo_text), cast(hi_text)
            if not lo < hi:
                raise ValueError("MIN must be below MAX")
            if kind == "log" and lo <= 0:
                raise ValueError("a log scale needs MIN > 0")
            scale = P.ScaleType.UNIT_LOG_SCALE if kind == "log" else P.ScaleType.UNIT_LINEAR_SCALE
            if kind == "int":
                return P(parameter_id=name, scale_type=scale,
                         integer_value_spec=P.IntegerValueSpec(min_value=lo, max_value=hi))
            return P(parameter_id=name, scale_type=scale,
                     double_value_spec=P.DoubleValueSpec(min_value=lo, max_value=hi))
        if kind == "discrete":
            values = sorted({float(v) for v in rest.split(",")})
            if len(values) < 2:
                raise ValueError("give at least two values")
            return P(parameter_id=name, discrete_value_spec=P.DiscreteValueSpec(values=values))
        values = rule.split("|")
        if len(values) < 2 or len(set(values)) != len(values) or not all(values):
            raise ValueError("give at least two distinct values separated by '|'")
        allowed = _trainer_choices().get(name)
        if allowed and set(values) - set(allowed):
            raise ValueError(f"the trainer's --{name} accepts only {', '.join(allowed)}")
        return P(parameter_id=name, categorical_value_spec=P.CategoricalValueSpec(values=values))
    except ValueError as e:
        raise ValueError(f"--tune_params entry {text!r}: {e}") from None


def _trainer_choices() -> dict[str, tuple[str, ...]]:
    """The trainer's enum flags, so a misspelt category fails here and not in trial 7."""
    from trainer import config

    return {"head": config.HEADS, "sample_weighting": config.WEIGHTINGS,
            "backbone": config.BACKBONES, "optimizer": config.OPTIMIZERS}


def tuned_names(params: Sequence[str]) -> list[str]:
    names = [p.partition("=")[0] for p in params]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"--tune_params names {', '.join(duplicates)} more than once")
    return names


def tuning_job_request(job: TrainingJob, params: Sequence[str], metric: str = DEFAULT_METRIC,
                       max_trials: int = 12, parallel_trials: int = 3, max_failed_trials: int = 0):
    from google.cloud import aiplatform_v1 as v1

    if max_trials < 1 or not 1 <= parallel_trials <= max_trials:
        raise ValueError(f"--max_trials={max_trials} / --parallel_trials={parallel_trials}: need "
                         "1 <= parallel_trials <= max_trials")
    if max_failed_trials < 0:
        raise ValueError(f"--max_failed_trials={max_failed_trials}: must be >= 0")
    tuned_names(params)
    study = v1.StudySpec(
        metrics=[v1.StudySpec.MetricSpec(metric_id=metric,
                                         goal=v1.StudySpec.MetricSpec.GoalType.MINIMIZE)],
        parameters=[parameter_spec(p) for p in params],
        # The trainer reports val_mae every epoch; a trial is worth its best epoch (the trainer
        # keeps the best model by validation MAE too).
        measurement_selection_type=v1.StudySpec.MeasurementSelectionType.BEST_MEASUREMENT)
    tuning_job = v1.HyperparameterTuningJob(
        display_name=job.display_name, study_spec=study, max_trial_count=max_trials,
        parallel_trial_count=parallel_trials, max_failed_trial_count=max_failed_trials,
        trial_job_spec=custom_job_spec(job))
    return v1.CreateHyperparameterTuningJobRequest(parent=job.parent,
                                                   hyperparameter_tuning_job=tuning_job)


def to_json(message) -> str:
    """A proto-plus message as the JSON the REST API takes (camelCase field names)."""
    from google.protobuf import json_format

    return json_format.MessageToJson(type(message).pb(message), indent=2)
