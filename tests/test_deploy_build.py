"""Dockerfile and cloudbuild.yaml: everything they copy, install, call or run exists.

Docker and Cloud Build cannot run here, so both files are parsed and every reference checked
against the repository; the submit step of cloudbuild.yaml is rendered with its substitutions
and run for real (as a dry run).
"""

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from deploy import specs

REPO = Path(__file__).resolve().parents[1]
SETUP = (REPO / "setup.py").read_text()


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def dockerignored(path: str) -> bool:
    """.dockerignore semantics for top-level entries: the last matching pattern wins."""
    ignored = False
    for pattern in (REPO / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        if fnmatch.fnmatch(path.rstrip("/"), pattern.lstrip("!").rstrip("/")):
            ignored = not negate
    return ignored


def module_exists(module: str) -> bool:
    path = REPO / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_base_image_tensorflow_is_in_setup_py_range():
    steps = dockerfile()
    tf_version = next(a.split("=", 1)[1] for i, a in steps if i == "ARG"
                      and a.startswith("TF_VERSION="))
    tf_range = re.search(r'TF_RANGE = "([^"]+)"', SETUP).group(1)
    assert tf_version in SpecifierSet(tf_range), (tf_version, tf_range)
    assert ("FROM", "tensorflow/tensorflow:${TF_VERSION}-gpu") in steps


def test_everything_copied_exists_and_is_not_dockerignored():
    copies = [shlex.split(a)[:-1] for i, a in dockerfile() if i == "COPY"]
    sources = [s for c in copies for s in c]
    for source in sources:
        assert (REPO / source).exists(), source
        assert not dockerignored(source), source
    # setup.py reads these at install time, in the first (dependencies-only) layer.
    for needed in re.findall(r'with_name\("([^"]+)"\)', SETUP):
        assert needed in copies[0], needed
    # Every package setup.py ships is copied before the final install.
    packages = set(re.findall(r'"(\w+)"', re.search(r"include=\[([^\]]*)\]", SETUP).group(1)))
    assert packages <= {s.rstrip("/") for s in sources}
    assert dockerignored(".venv") and dockerignored(".git") and dockerignored("demo_out")


def test_installs_the_cloud_extra_without_tensorflow():
    runs = " ".join(a for i, a in dockerfile() if i == "RUN")
    extras = re.findall(r"'\.\[(\w+)\]'", runs)
    assert extras == ["cloud"]
    cloud = re.search(r'"cloud": \[([^\]]*)\]', SETUP).group(1)
    assert "tensorflow" not in cloud  # TF comes from the base image
    assert "aiplatform" in cloud and "hypertune" in cloud  # tuning trials report val_mae


def test_entrypoint_is_the_trainer_and_matches_the_job_command():
    [entrypoint] = [json.loads(a) for i, a in dockerfile() if i == "ENTRYPOINT"]
    assert entrypoint == list(specs.TRAINER_COMMAND)
    assert module_exists(entrypoint[2])  # the build also imports it after installing


# --- cloudbuild.yaml -------------------------------------------------------------------------

BUILD = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
_VAR = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")


def render(text: str, overrides: dict | None = None) -> str:
    """Cloud Build substitution: $$ -> $, ${_X}/$X -> value (values may refer to others)."""
    values = {**BUILD["substitutions"], "PROJECT_ID": "my-proj", **(overrides or {})}

    def sub(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"cloudbuild.yaml uses ${name}, which is not declared")
        return _VAR.sub(sub, str(values[name]))

    return _VAR.sub(sub, text)


def step(step_id: str) -> dict:
    [found] = [s for s in BUILD["steps"] if s["id"] == step_id]
    return found


def test_substitutions_are_declared_used_and_user_defined():
    used = set()
    for match in _VAR.finditer(yaml.safe_dump(BUILD["steps"]) + " ".join(BUILD["images"])):
        if match.group(0) != "$$":
            used.add(match.group(1) or match.group(2))
    declared = set(BUILD["substitutions"])
    assert all(name.startswith("_") for name in declared)
    assert used - declared == {"PROJECT_ID"}  # built in
    assert {"_REGION", "_REPOSITORY", "_IMAGE", "_TAG", "_SUBMIT_TRAINING"} <= declared
    referenced_in_values = {m.group(1) for v in BUILD["substitutions"].values()
                            for m in _VAR.finditer(str(v)) if m.group(1)}
    assert declared - used <= referenced_in_values  # e.g. _STAGING_BUCKET only via _DATA_DIR
    assert BUILD["options"]["dynamicSubstitutions"] is True  # values refer to PROJECT_ID


def test_test_step_runs_ci_whose_make_targets_exist():
    test = step("test")
    assert test["entrypoint"] == "bash" and test["args"] == [".ci/run"]
    ci = (REPO / ".ci/run").read_text()
    makefile = (REPO / "Makefile").read_text()
    targets = re.findall(r"^\s*make (\S+)", ci, flags=re.M)
    assert targets
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target


def test_build_push_and_images_name_one_artifact_registry_image():
    image = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/${_IMAGE}:${_TAG}"
    build, push = step("build")["args"], step("push")["args"]
    assert build[0] == "build" and build[-1] == "."
    assert (REPO / build[build.index("--file") + 1]).is_file()
    assert build[build.index("--tag") + 1] == image
    assert push == ["push", image]
    assert BUILD["images"] == [image]
    assert render(image) == "us-central1-docker.pkg.dev/my-proj/face-age/face-age-trainer:latest"


def test_every_python_module_and_make_target_in_the_steps_exists():
    text = yaml.safe_dump(BUILD["steps"])
    modules = re.findall(r"python -m ([\w.]+)", text)
    assert "deploy.submit_training" in modules
    for module in modules:
        assert module_exists(module), module


def _run_submit_step(mode: str) -> subprocess.CompletedProcess:
    script = render(step("submit-training")["args"][1], {"_SUBMIT_TRAINING": mode})
    # The step uses the .venv the test step built; here, this interpreter plays that part.
    script = script.replace(".venv/bin/python", shlex.quote(sys.executable))
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_submit_step_builds_a_valid_job_for_the_pushed_image():
    proc = _run_submit_step("dry_run")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    assert job["parent"] == "projects/my-proj/locations/us-central1"
    spec = job["customJob"]["jobSpec"]
    assert spec["baseOutputDirectory"]["outputUriPrefix"].startswith("gs://my-proj-face-age/")
    [pool] = spec["workerPoolSpecs"]
    assert pool["containerSpec"]["imageUri"] == render(BUILD["images"][0])
    assert pool["machineSpec"] == {"machineType": "n1-standard-8",
                                   "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 1}
    assert pool["containerSpec"]["args"] == [
        "--data_dir=gs://my-proj-face-age/records", "--backbone=resnet50", "--batch_size=64",
        "--epochs=20", "--distribution_strategy=mirrored"]


@pytest.mark.parametrize("mode, code, message", [
    ("false", 0, "training not submitted"), ("maybe", 2, "must be false, true or dry_run")])
def test_submit_step_toggle(mode, code, message):
    proc = _run_submit_step(mode)
    assert proc.returncode == code
    assert message in proc.stdout + proc.stderr
