r"""Run preprocessing.run on Dataflow: build the exact command, validate its options, launch it.

    python -m deploy.dataflow --project=P --region=us-central1 --bucket=gs://B \
        --labels=gs://B/raw/labels.csv --images=gs://B/raw/images --output_dir=gs://B/records \
        [--max_num_workers=10] [--dry_run] [-- more preprocessing.run flags]

Prints the ``python -m preprocessing.run --runner=DataflowRunner ...`` command and, unless
``--dry_run``, runs it from the repository root. ``validate(argv)`` first applies the Dataflow
checks' one home, ``preprocessing.options.validate_pipeline_options``, so a bad command fails
before it is printed or launched.
"""

from __future__ import annotations

import datetime
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import app, flags

from contract import cloud
from deploy import flags as common
from deploy import trainer_args
from preprocessing import options

REPO_ROOT = Path(__file__).resolve().parents[1]

BUCKET = flags.DEFINE_string("bucket", None, "gs://BUCKET for Dataflow temp and staging files.")
LABELS = flags.DEFINE_string("labels", None, "gs:// label file (preprocessing.run --labels).")
IMAGES = flags.DEFINE_string("images", None, "gs:// image folder (preprocessing.run --images).")
OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "gs:// output for the TFRecords.")
JOB_NAME = flags.DEFINE_string("job_name", None, "Dataflow job name; default "
                               "face-age-preprocess-TIME.")
MAX_NUM_WORKERS = flags.DEFINE_integer("max_num_workers", 0, "Autoscaling cap (0 = Dataflow's).")
WORKER_MACHINE_TYPE = flags.DEFINE_string("worker_machine_type", "", "e.g. n1-standard-4.")


def validate(argv: Sequence[str], cwd: str | Path = ".") -> None:
    """preprocessing.run's argv -> its Dataflow checks; raises ValueError naming the flag.

    Does nothing for other runners: local runs may use local paths.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    job_flags = trainer_args.parse(argv, what="preprocessing.run")
    options.validate_pipeline_options(
        PipelineOptions(list(argv)), {name: job_flags.get(name) for name in options.DATA_FLAGS},
        cwd, face=job_flags.get("face", "none"))


def command(project: str, region: str, bucket: str, labels: str, images: str, output_dir: str,
            job_name: str, max_num_workers: int = 0, worker_machine_type: str = "",
            extra: Sequence[str] = (), python: str = "python") -> list[str]:
    """The preprocessing.run command line for Dataflow (validated; run it from the repo root)."""
    bucket = cloud.require_gs(bucket, "bucket", "Dataflow")
    argv = [
        "--runner=DataflowRunner", f"--project={project}", f"--region={region}",
        f"--job_name={job_name}",
        f"--temp_location={cloud.join(bucket, 'dataflow', 'tmp')}",
        f"--staging_location={cloud.join(bucket, 'dataflow', 'staging')}",
        # Our code reaches the workers as an sdist of setup.py, installed without extras: its
        # base requirements are exactly what the job imports (Beam, Pillow, NumPy, crc32c,
        # absl; tested), no TensorFlow, Keras or TFDS (--face adds them: face_requirements).
        "--setup_file=./setup.py",
        f"--labels={labels}", f"--images={images}", f"--output_dir={output_dir}",
    ]
    if max_num_workers:
        argv.append(f"--max_num_workers={max_num_workers}")
    if worker_machine_type:
        argv.append(f"--worker_machine_type={worker_machine_type}")
    argv += list(extra)
    argv += face_requirements(extra)
    for name, value in (("labels", labels), ("images", images), ("output_dir", output_dir)):
        if not value:  # else the argv would carry the text "None"
            raise ValueError(f"--{name} is required (a gs:// URI)")
    validate(argv, cwd=REPO_ROOT)
    return [python, "-m", "preprocessing.run", *argv]


def face_requirements(extra: Sequence[str]) -> list[str]:
    """The flags that install the detector on the workers when ``extra`` asks for --face.

    The setup.py sdist is installed without extras: --face=detect|align also needs the [faces]
    extra and TensorFlow, listed in options.FACES_REQUIREMENTS. The cache is skipped so the
    launcher does not download and stage TensorFlow's wheel itself: workers pip-install the
    file's packages at start-up. A user's own --requirements_file is kept (and checked).
    """
    job_flags = trainer_args.parse(extra, what="preprocessing.run")
    if job_flags.get("face", "none") == "none" or "requirements_file" in job_flags:
        return []
    flags_ = [f"--requirements_file={options.FACES_REQUIREMENTS}"]
    if "requirements_cache" not in job_flags:
        flags_.append("--requirements_cache=skip")
    return flags_


def main(argv: list[str]) -> None:
    job_name = JOB_NAME.value or "face-age-preprocess-" + datetime.datetime.now(
        datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    try:
        cmd = command(common.PROJECT.value, common.REGION.value, BUCKET.value, LABELS.value,
                      IMAGES.value, OUTPUT_DIR.value, job_name, MAX_NUM_WORKERS.value,
                      WORKER_MACHINE_TYPE.value, extra=argv[1:])
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(shlex.join(cmd))
    if not common.DRY_RUN.value:
        sys.exit(subprocess.call([sys.executable, *cmd[1:]], cwd=REPO_ROOT))


if __name__ == "__main__":
    app.run(main)
