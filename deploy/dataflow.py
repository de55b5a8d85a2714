r"""Run preprocessing.run on Dataflow: build the exact command, validate its options, launch it.

    python -m deploy.dataflow --project=P --region=us-central1 --bucket=gs://B \
        --labels=gs://B/raw/labels.csv --images=gs://B/raw/images --output_dir=gs://B/records \
        [--max_num_workers=10] [--dry_run] [-- more preprocessing.run flags]

prints the ``python -m preprocessing.run --runner=DataflowRunner ...`` command and, unless
``--dry_run``, runs it from the repository root. ``validate(argv)`` is the check itself; it takes
the argv of preprocessing.run, so that job can call it too before building its pipeline.

Why these checks: a Dataflow job that fails on a local temp path, a missing region or code that
never reached the workers fails only after minutes of worker start-up.
"""

from __future__ import annotations

import datetime
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import app, flags

from deploy import flags as common
from deploy import gcs, specs, trainer_args

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = "deploy/dataflow_requirements.txt"
# preprocessing.run's own flags that name data: Dataflow workers must reach them.
IO_FLAGS = ("labels", "images", "output_dir")
_JOB_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")

BUCKET = flags.DEFINE_string("bucket", None, "gs://BUCKET for Dataflow temp and staging files.")
LABELS = flags.DEFINE_string("labels", None, "gs:// label file (preprocessing.run --labels).")
IMAGES = flags.DEFINE_string("images", None, "gs:// image folder (preprocessing.run --images).")
OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "gs:// output for the TFRecords.")
JOB_NAME = flags.DEFINE_string("job_name", None, "Dataflow job name; default "
                               "face-age-preprocess-TIME.")
MAX_NUM_WORKERS = flags.DEFINE_integer("max_num_workers", 0, "Autoscaling cap (0 = Dataflow's).")
WORKER_MACHINE_TYPE = flags.DEFINE_string("worker_machine_type", "", "e.g. n1-standard-4.")


def validate(argv: Sequence[str], cwd: str | Path = ".") -> None:
    """Checks preprocessing.run's argv for a Dataflow run; raises ValueError naming the flag.

    Does nothing for other runners: local runs may use local paths.
    """
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        PipelineOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )

    options = PipelineOptions(list(argv))
    if options.view_as(StandardOptions).runner not in ("DataflowRunner", "dataflow"):
        return
    cloud, setup = options.view_as(GoogleCloudOptions), options.view_as(SetupOptions)
    specs.check_project_region(cloud.project, cloud.region)
    gcs.require_gs(cloud.temp_location, "temp_location", "Dataflow")
    if cloud.staging_location:
        gcs.require_gs(cloud.staging_location, "staging_location", "Dataflow")
    if cloud.job_name and not _JOB_NAME.match(cloud.job_name):
        raise ValueError(f"--job_name={cloud.job_name!r}: lowercase letters, digits and '-', "
                         "starting with a letter")
    if not setup.setup_file:
        raise ValueError("--setup_file=./setup.py is required: it ships the preprocessing "
                         "package to the Dataflow workers")
    if not (Path(cwd) / setup.setup_file).is_file():
        raise ValueError(f"--setup_file={setup.setup_file}: no such file under {Path(cwd)}")
    if setup.save_main_session:
        raise ValueError("--save_main_session: not needed and fragile here; the package goes to "
                         "the workers through --setup_file")
    if setup.requirements_file and not (Path(cwd) / setup.requirements_file).is_file():
        raise ValueError(f"--requirements_file={setup.requirements_file}: no such file")
    workers = options.view_as(WorkerOptions).max_num_workers
    if workers is not None and workers < 1:
        raise ValueError(f"--max_num_workers={workers}: must be >= 1")
    job_flags = trainer_args.parse(argv, what="preprocessing.run")
    for name in IO_FLAGS:
        if name in job_flags:
            gcs.require_gs(job_flags[name], name, "Dataflow workers")


def command(project: str, region: str, bucket: str, labels: str, images: str, output_dir: str,
            job_name: str, max_num_workers: int = 0, worker_machine_type: str = "",
            extra: Sequence[str] = (), python: str = "python") -> list[str]:
    """The preprocessing.run command line for Dataflow (validated; run it from the repo root)."""
    bucket = gcs.require_gs(bucket, "bucket", "Dataflow")
    argv = [
        "--runner=DataflowRunner", f"--project={project}", f"--region={region}",
        f"--job_name={job_name}",
        f"--temp_location={gcs.join(bucket, 'dataflow', 'tmp')}",
        f"--staging_location={gcs.join(bucket, 'dataflow', 'staging')}",
        # Our code reaches the workers as an sdist of setup.py; TensorFlow, which setup.py keeps
        # in an extra, through the requirements file, installed by each worker at start-up
        # (requirements_cache=skip: no pip download of TF sdists on the launching machine).
        "--setup_file=./setup.py", f"--requirements_file={REQUIREMENTS}",
        "--requirements_cache=skip",
        f"--labels={labels}", f"--images={images}", f"--output_dir={output_dir}",
    ]
    if max_num_workers:
        argv.append(f"--max_num_workers={max_num_workers}")
    if worker_machine_type:
        argv.append(f"--worker_machine_type={worker_machine_type}")
    argv += list(extra)
    for name, value in (("labels", labels), ("images", images), ("output_dir", output_dir)):
        gcs.require_gs(value, name, "Dataflow workers")
    validate(argv, cwd=REPO_ROOT)
    return [python, "-m", "preprocessing.run", *argv]


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
