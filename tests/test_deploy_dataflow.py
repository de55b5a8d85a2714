"""Dataflow launch: the exact preprocessing.run command and the option checks before submission."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import dataflow

REPO = Path(__file__).resolve().parents[1]
GOOD = ["--runner=DataflowRunner", "--project=my-proj", "--region=us-central1",
        "--temp_location=gs://my-bucket/tmp", "--setup_file=./setup.py",
        "--labels=gs://my-bucket/raw/labels.csv", "--images=gs://my-bucket/raw/images",
        "--output_dir=gs://my-bucket/records"]


def without(flag):
    return [a for a in GOOD if not a.startswith(f"--{flag}=")]


def test_good_options_pass_and_local_runs_are_not_checked():
    dataflow.validate(GOOD, cwd=REPO)
    dataflow.validate(["--runner=DirectRunner", "--labels=/tmp/l.csv"], cwd=REPO)
    dataflow.validate(["--labels=/tmp/l.csv"], cwd=REPO)  # default runner = DirectRunner


@pytest.mark.parametrize("argv, message", [
    (without("project"), "--project is required"),
    (without("region"), "--region is required"),
    (without("temp_location"), "--temp_location is required"),
    ([*without("temp_location"), "--temp_location=/tmp/beam"],
     "--temp_location='/tmp/beam' must be a gs:// URI"),
    ([*GOOD, "--staging_location=staging"], "--staging_location='staging' must be a gs:// URI"),
    (without("setup_file"), "--setup_file=./setup.py is required"),
    ([*without("setup_file"), "--setup_file=./nope/setup.py"], "--setup_file=./nope/setup.py: "
                                                                "no such file"),
    ([*GOOD, "--save_main_session"], "--save_main_session"),
    ([*GOOD, "--requirements_file=missing.txt"], "--requirements_file=missing.txt: no such"),
    ([*GOOD, "--job_name=Face_Age"], "--job_name='Face_Age'"),
    ([*GOOD, "--max_num_workers=0"], "--max_num_workers=0"),
    ([*without("labels"), "--labels=/home/me/labels.csv"],
     "--labels='/home/me/labels.csv' must be a gs:// URI: Dataflow workers cannot read"),
    ([*without("output_dir"), "--output_dir", "out"], "--output_dir='out' must be a gs:// URI"),
])
def test_bad_dataflow_options(argv, message):
    with pytest.raises(ValueError) as info:
        dataflow.validate(argv, cwd=REPO)
    assert message in str(info.value)


def test_command_is_complete_and_valid():
    cmd = dataflow.command("my-proj", "us-central1", "gs://my-bucket", "gs://my-bucket/l.csv",
                           "gs://my-bucket/img", "gs://my-bucket/records", "prep-1",
                           max_num_workers=8, worker_machine_type="n1-standard-4",
                           extra=["--image_size=224"])
    assert cmd[:3] == ["python", "-m", "preprocessing.run"]
    assert cmd[3:] == [
        "--runner=DataflowRunner", "--project=my-proj", "--region=us-central1",
        "--job_name=prep-1", "--temp_location=gs://my-bucket/dataflow/tmp",
        "--staging_location=gs://my-bucket/dataflow/staging", "--setup_file=./setup.py",
        "--labels=gs://my-bucket/l.csv", "--images=gs://my-bucket/img",
        "--output_dir=gs://my-bucket/records", "--max_num_workers=8",
        "--worker_machine_type=n1-standard-4", "--image_size=224"]
    with pytest.raises(ValueError, match="--bucket='out' must be a gs:// URI"):
        dataflow.command("my-proj", "us-central1", "out", "gs://b1b/l", "gs://b1b/i", "gs://b1b/o",
                         "prep-1")


def test_cli_dry_run_prints_the_command_and_runs_nothing():
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.dataflow", "--project=my-proj", "--region=us-central1",
         "--bucket=gs://my-bucket", "--labels=gs://my-bucket/raw/labels.csv",
         "--images=gs://my-bucket/raw/images", "--output_dir=gs://my-bucket/records",
         "--job_name=prep-1", "--dry_run", "--", "--num_shards=16"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    printed = shlex.split(proc.stdout.strip())
    assert printed == dataflow.command(
        "my-proj", "us-central1", "gs://my-bucket", "gs://my-bucket/raw/labels.csv",
        "gs://my-bucket/raw/images", "gs://my-bucket/records", "prep-1", extra=["--num_shards=16"])


def test_preprocessing_run_accepts_the_command(monkeypatch):
    """The printed argv goes through preprocessing.run's own parser and Dataflow checks.

    Only its remote existence checks (labels/images on GCS, which need credentials) are
    switched off; flag names, Beam options and its own Dataflow validation all run.
    """
    from preprocessing import options

    monkeypatch.setattr(options, "validate", lambda config: [])  # no label columns read
    monkeypatch.chdir(REPO)  # --setup_file=./setup.py is relative to where the job starts
    cmd = dataflow.command("my-proj", "us-central1", "gs://my-bucket", "gs://my-bucket/l.csv",
                           "gs://my-bucket/img", "gs://my-bucket/records", "prep-1",
                           max_num_workers=8, worker_machine_type="n1-standard-4",
                           extra=["--image_size=96", "--num_shards=4"])
    config, pipeline_options = options.parse(cmd[3:])
    assert (config.labels, config.images, config.output_dir) == (
        "gs://my-bucket/l.csv", "gs://my-bucket/img", "gs://my-bucket/records")
    assert (config.image.framing.image_size, config.num_shards) == (96, 4)
    beam = pipeline_options.get_all_options()
    assert beam["runner"] == "DataflowRunner"
    assert beam["setup_file"] == "./setup.py" and beam["requirements_file"] is None
    assert beam["max_num_workers"] == 8


def test_face_jobs_install_the_detector_on_the_workers(monkeypatch, tmp_path):
    """--face=detect|align adds the requirements file naming the [faces] extra and TensorFlow,
    and preprocessing.run's own parser and Dataflow checks accept the submitted options."""
    from preprocessing import options

    monkeypatch.setattr(options, "validate", lambda config: [])
    monkeypatch.chdir(REPO)
    args = ("my-proj", "us-central1", "gs://my-bucket", "gs://my-bucket/l.csv",
            "gs://my-bucket/img", "gs://my-bucket/records", "prep-1")
    plain = dataflow.command(*args, extra=["--face=none"])
    assert not any(a.startswith("--requirements") for a in plain)
    cmd = dataflow.command(*args, extra=["--face=align", "--multi_face=reject"])
    assert cmd[-3:] == ["--multi_face=reject", "--requirements_file=requirements-faces.txt",
                        "--requirements_cache=skip"]
    config, pipeline_options = options.parse(cmd[3:])
    assert (config.face, config.multi_face) == ("align", "reject")
    beam = pipeline_options.get_all_options()
    assert beam["requirements_file"] == options.FACES_REQUIREMENTS
    assert beam["requirements_cache"] == "skip"
    # A user's own requirements file is kept, and must name the detector and TensorFlow.
    own = tmp_path / "own-requirements.txt"
    own.write_text("pillow\n")
    with pytest.raises(ValueError, match=r"lacks \['mtcnn', 'tensorflow'\]"):
        dataflow.command(*args, extra=["--face=detect", f"--requirements_file={own}"])


def test_the_face_requirements_are_setup_pys_faces_extra_and_tensorflow():
    from packaging.requirements import Requirement
    from setup_py import setup_kwargs

    from preprocessing import options

    lines = [line.strip() for line in (REPO / options.FACES_REQUIREMENTS).read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    extras = setup_kwargs()["extras_require"]
    tf_cpu = Requirement(extras["cpu"][0])
    assert tf_cpu.name == "tensorflow-cpu"
    wanted = [*map(Requirement, extras["faces"]), Requirement(f"tensorflow{tf_cpu.specifier}")]
    as_set = lambda reqs: {(r.name, r.specifier) for r in reqs}
    assert as_set(map(Requirement, lines)) == as_set(wanted)


# Runs the sample generator's and the Beam job's commands in this child process (in-memory
# DirectRunner), and records every import statement executed by the project's own modules: the
# third-party modules they import, mapped to the distributions that provide them.
_RECORD_JOB_IMPORTS = """
import builtins, importlib.metadata, json, runpy, sys
OURS = ("contract", "imaging", "preprocessing", "deploy", "trainer")
seen, real_import = set(), builtins.__import__
def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    if level == 0 and (importer == "__main__" or importer.split(".")[0] in OURS):
        seen.add(name.split(".")[0])
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = recording_import
out = sys.argv[1]
for argv in (["preprocessing.synthetic", f"--output_dir={out}/sample", "--num_images=50",
              "--image_size=32"],
             ["preprocessing.run", f"--labels={out}/sample/labels.csv",
              f"--images={out}/sample/images", f"--output_dir={out}/records", "--image_size=32"]):
    sys.argv = argv
    try:
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        assert not e.code, (argv[0], e.code)
third_party = sorted(m for m in seen if m not in sys.stdlib_module_names and m not in OURS)
providers = importlib.metadata.packages_distributions()
print(json.dumps({m: sorted(providers.get(m, ["?"])) for m in third_party}))
"""


@pytest.mark.slow
def test_the_base_requirements_are_what_the_beam_job_imports(tmp_path):
    """Dataflow workers install setup.py's install_requires: exactly what the job's commands
    import (the job, and the sample generator it is tried on), so no trainer library
    (TensorFlow, Keras, TFDS, matplotlib...) is installed on a worker."""
    import json

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from setup_py import setup_kwargs

    proc = subprocess.run([sys.executable, "-c", _RECORD_JOB_IMPORTS, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"apache_beam", "PIL", "numpy", "absl"} <= set(imported)  # the record is not empty
    job = {canonicalize_name(d) for dists in imported.values() for d in dists}
    base = {canonicalize_name(Requirement(r).name)
            for r in setup_kwargs()["install_requires"]}
    assert job == base, (imported, base)
