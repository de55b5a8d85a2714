"""The tf.distribute strategy and the "who writes what" rules of a multi-worker job.

TF_CONFIG (set by Vertex AI, or by hand for local multi-worker runs) names the cluster and this
process's task. The chief is the ``chief`` task when the cluster has one, otherwise ``worker`` 0,
otherwise (no TF_CONFIG) the only process. Every worker must run the same collective ops (fit,
save), but only the chief's files are the job's artefacts: the others write to temporary
directories that are removed afterwards, so MODEL_DIR holds exactly one set of results.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping

import tensorflow as tf


def tf_config(env: Mapping[str, str] | None = None) -> dict:
    """The parsed TF_CONFIG ({} when unset), with an error naming the variable when malformed."""
    env = os.environ if env is None else env
    raw = env.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from e
    if not isinstance(parsed, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {raw[:200]!r}")
    return parsed


def num_tasks(cfg: dict) -> int:
    """Training tasks in the cluster (chief + workers; evaluators and ps do not train)."""
    cluster = cfg.get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def task(cfg: dict) -> tuple[str, int]:
    t = cfg.get("task", {})
    return t.get("type", "chief"), int(t.get("index", 0))


def is_chief(cfg: dict) -> bool:
    if not cfg.get("cluster"):
        return True
    task_type, index = task(cfg)
    if "chief" in cfg["cluster"]:
        return task_type == "chief"
    return task_type == "worker" and index == 0


def resolve_strategy_name(name: str, tpu: str, cfg: dict, num_gpus: int) -> str:
    """What 'auto' means on this machine; other names pass through."""
    if name != "auto":
        return name
    if tpu:
        return "tpu"
    if num_tasks(cfg) > 1:
        return "multi_worker_mirrored"
    if num_gpus > 1:
        return "mirrored"
    return "one_device"


def create_strategy(name: str = "auto", tpu: str = "") -> tf.distribute.Strategy:
    """Creates the strategy. Call it first thing: multi-worker and TPU set up the runtime."""
    cfg = tf_config()
    gpus = tf.config.list_physical_devices("GPU")
    name = resolve_strategy_name(name, tpu, cfg, len(gpus))
    if name == "tpu":
        check_image_accelerator("tpu")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(**tpu_resolver_kwargs(tpu))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker_mirrored":
        if num_tasks(cfg) < 1:
            raise ValueError("--distribution_strategy=multi_worker_mirrored needs TF_CONFIG "
                             "naming the cluster and this task")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _patch_keras_multi_worker_reduce()
        return strategy
    if name == "mirrored":
        # With no GPU, mirror over the logical CPU devices (tests configure two), not just CPU:0.
        devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
                   or [d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy(devices)
    if name == "one_device":
        if gpus:
            return tf.distribute.OneDeviceStrategy("/gpu:0")
        # On the CPU, TensorFlow's default strategy: the same single replica, but Keras's
        # train step under OneDeviceStrategy("/cpu:0") ran 2-3x slower (TF 2.21, 2 cores:
        # MobileNetV3-Small at 96 px 62 against 180 images/s; `make bench-train` compares them).
        return tf.distribute.get_strategy()
    raise ValueError(f"--distribution_strategy={name!r}: unknown strategy")


def tpu_resolver_kwargs(tpu: str) -> dict[str, str]:
    """--tpu -> the TPUClusterResolver's keyword arguments.

    ``local`` is a TPU VM, where the TPU is attached to this host; Vertex AI runs every TPU job
    (v2, v3 and v5e) on TPU VMs, so it is what deploy.submit_training passes. The resolver knows
    ``local`` itself: ``tpu=""`` would instead ask the Cloud TPU API for a TPU named by the
    TPU_NAME environment variable and fail without one. A TPU name or ``grpc://`` address (a TPU
    node reached over the network) passes through unchanged.
    """
    tpu = (tpu or "").strip()
    if not tpu:
        raise ValueError("--tpu is empty: pass --tpu=local on a TPU VM (every Vertex AI TPU "
                         "job), else the TPU's name or grpc://HOST:8470 address")
    if tpu.startswith("grpc://") and not tpu[len("grpc://"):]:
        raise ValueError(f"--tpu={tpu}: the grpc:// address has no host (grpc://HOST:8470)")
    return {"tpu": tpu}


# Set by the Dockerfile (ENV FACE_AGE_ACCELERATOR=gpu|tpu); unset outside the trainer image.
IMAGE_ACCELERATOR_ENV = "FACE_AGE_ACCELERATOR"


def check_image_accelerator(wanted: str, env: Mapping[str, str] | None = None) -> None:
    """Fails at start, naming the fix, when the trainer image was built for another accelerator.

    The GPU image's TensorFlow has no TPU support and no libtpu: on a TPU VM it would only find
    the host's CPUs after a long TPU initialisation error.
    """
    env = os.environ if env is None else env
    built_for = env.get(IMAGE_ACCELERATOR_ENV, "")
    if built_for and built_for != wanted:
        raise ValueError(f"this trainer image was built for {built_for} ({IMAGE_ACCELERATOR_ENV}"
                         f"={built_for}) but the job asks for a {wanted}: build the image with "
                         f"--build-arg ACCELERATOR={wanted} (cloudbuild.yaml: _VARIANT={wanted})")


def _patch_keras_multi_worker_reduce() -> None:
    """Works around Keras 3.15 fit() under MultiWorkerMirroredStrategy (no upstream fix yet).

    keras/src/backend/tensorflow/trainer.py reduces every per-replica log value across workers
    with ``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalar loss and metrics.
    This wraps that one module-level function so scalars are reduced with axis=None (a plain
    cross-worker mean); everything else goes through Keras's own code unchanged.
    """
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    original = getattr(keras_tf_trainer, "reduce_per_replica", None)
    if original is None:
        raise RuntimeError(
            f"keras {keras_version()} has no keras.src.backend.tensorflow.trainer."
            "reduce_per_replica: the multi-worker workaround in trainer/distribution.py was "
            "written for Keras 3.15 (setup.py pins it); check whether the upstream bug is fixed")
    if getattr(original, "_face_age_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if (reduction in ("auto", "mean")
                and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None)
                if isinstance(v, tf.distribute.DistributedValues) or tf.is_tensor(v) else v,
                values)
        return original(values, strategy, reduction)

    reduce_per_replica._face_age_patched = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def keras_version() -> str:
    import keras

    return keras.__version__


def strategy_is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Chief-ness from the strategy's resolver (multi-worker), else from TF_CONFIG."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
        if task_type is None:
            return True
        if "chief" in resolver.cluster_spec().as_dict():
            return task_type == "chief"
        return task_type == "worker" and task_id == 0
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return is_chief(tf_config())
    return True


class WriteDirs:
    """Where this process writes: the real dirs on the chief, private dirs elsewhere.

    Non-chief workers write final artefacts (history, metrics, SavedModel, TensorBoard) to local
    temporary directories. Their checkpoints (resume backup, best weights) go to
    ``checkpoint_dir/worker-<id>`` instead, which survives a restart: every worker must restore
    its own copy of the training state; it is removed when training completes.
    """

    def __init__(self, model_dir: str, checkpoint_dir: str, tensorboard_dir: str, chief: bool,
                 worker_id: int = 0):
        self.chief = chief
        self._temps: list[str] = []
        if chief:
            self.model_dir, self.checkpoint_dir, self.tensorboard_dir = (
                model_dir, checkpoint_dir, tensorboard_dir)
        else:
            self.model_dir = self._temp("model")
            self.tensorboard_dir = self._temp("tensorboard")
            self.checkpoint_dir = f"{checkpoint_dir}/worker-{worker_id}"
        self.backup_dir = self.checkpoint_dir + "/backup"

    def _temp(self, what: str) -> str:
        path = tempfile.mkdtemp(prefix=f"face_age_worker_{what}_")
        self._temps.append(path)
        return path

    def cleanup(self) -> None:
        for path in self._temps:
            shutil.rmtree(path, ignore_errors=True)
        self._temps.clear()


def worker_id(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", 0) or 0)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    return int(getattr(getattr(strategy, "extended", None), "_num_workers", 1) or 1)


def describe(strategy: tf.distribute.Strategy) -> str:
    name = type(strategy).__name__.lstrip("_")  # _DefaultDistributionStrategy on one CPU
    return (f"{name} with {strategy.num_replicas_in_sync} replica(s) on "
            f"{num_workers(strategy)} worker(s)")
