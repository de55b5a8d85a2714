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
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from setup_py import setup_kwargs

from deploy import image_kind, specs

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


def arg(name: str) -> str:
    return next(a.split("=", 1)[1] for i, a in dockerfile() if i == "ARG"
                and a.startswith(name + "="))


def test_base_image_tensorflow_is_in_setup_py_range():
    steps = dockerfile()
    tf_range = re.search(r'TF_RANGE = "([^"]+)"', SETUP).group(1)
    for name in ("TF_VERSION", "TF_TPU_VERSION"):
        assert arg(name) in SpecifierSet(tf_range), (name, arg(name), tf_range)
    assert ("FROM", "tensorflow/tensorflow:${TF_VERSION}-gpu AS base-gpu") in steps


def test_one_trainer_stage_on_the_base_the_accelerator_names():
    froms = [a for i, a in dockerfile() if i == "FROM"]
    bases = {a.split(" AS ")[1] for a in froms[:-1]}
    assert bases == {f"base-{kind}" for kind in ("gpu", "tpu")}
    assert froms[-1] == "base-${ACCELERATOR} AS trainer" and arg("ACCELERATOR") == "gpu"


def test_tpu_stage_pins_tensorflow_tpu_and_the_libtpu_its_release_requires():
    """tensorflow-tpu 2.20.0's metadata (PyPI) requires libtpu~=0.0.14; 2.19.1 pinned 0.0.10."""
    requires = {"2.20.0": "0.0.14", "2.19.1": "0.0.10"}
    assert requires[arg("TF_TPU_VERSION")] == arg("LIBTPU_VERSION")
    runs = " ".join(a for i, a in dockerfile() if i == "RUN")
    assert '"tensorflow-tpu==${TF_TPU_VERSION}" "libtpu==${LIBTPU_VERSION}"' in runs
    assert "/lib/libtpu.so" in runs  # where Vertex AI's TPU containers load it from


def test_the_image_records_its_variant_in_labels_and_environment():
    steps = dockerfile()
    [label] = [a for i, a in steps if i == "LABEL"]
    assert 'face-age.accelerator="${ACCELERATOR}"' in label
    assert 'face-age.reduction-server="${REDUCTION_SERVER}"' in label
    env = " ".join(a for i, a in steps if i == "ENV")
    from trainer import distribution

    assert f'{distribution.IMAGE_ACCELERATOR_ENV}="${{ACCELERATOR}}"' in env
    assert 'FACE_AGE_REDUCTION_SERVER="${REDUCTION_SERVER}"' in env


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


def test_installs_the_trainer_and_cloud_extras_without_tensorflow():
    runs = " ".join(a for i, a in dockerfile() if i == "RUN")
    extras = re.findall(r"'\.\[([\w,]+)\]'", runs)
    assert extras == ["trainer,cloud"]
    for extra in ("trainer", "cloud"):
        names = {Requirement(r).name for r in setup_kwargs()["extras_require"][extra]}
        assert not names & {"tensorflow", "tensorflow-cpu", "tensorflow-tpu"}  # base stage's
    cloud = " ".join(setup_kwargs()["extras_require"]["cloud"])
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
    assert {"_REGION", "_REPOSITORY", "_IMAGE", "_TAG", "_VARIANT", "_SUBMIT_TRAINING"} <= declared
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


IMAGE = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/${_IMAGE}:${_TAG}-${_VARIANT}"


def _docker_build_command(variant: str) -> subprocess.CompletedProcess:
    """The build step's script, rendered, with `docker` replaced by a stand-in that prints."""
    script = render(step("build")["args"][1], {"_VARIANT": variant})
    stand_in = 'docker() { printf "%s\\n" "$@"; }\n'
    return subprocess.run(["bash", "-c", stand_in + script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("variant, build_args, kind", [
    ("gpu", [], "gpu"), ("gpu-rs", ["--build-arg", "REDUCTION_SERVER=1"], "gpu-rs"),
    ("tpu", ["--build-arg", "ACCELERATOR=tpu"], "tpu")])
def test_each_variant_is_built_with_its_build_args_and_tagged_with_its_kind(
        variant, build_args, kind):
    proc = _docker_build_command(variant)
    assert proc.returncode == 0, proc.stderr
    tag = render(IMAGE, {"_VARIANT": variant})
    assert proc.stdout.split() == ["build", "--file", "Dockerfile", *build_args, "--tag", tag,
                                   "."]
    declared = {a.split("=")[0] for i, a in dockerfile() if i == "ARG"}
    assert {a.split("=")[0] for a in build_args[1::2]} <= declared
    # What deploy.submit_training reads back from the tag.
    assert image_kind.kind_of(tag) == kind
    assert _docker_build_command("cpu").returncode == 2


def test_push_and_images_name_the_built_image():
    assert step("build")["env"] == ["DOCKER_BUILDKIT=1"]  # only the chosen base stage is built
    assert step("push")["args"] == ["push", IMAGE]
    assert BUILD["images"] == [IMAGE]
    assert render(IMAGE) == (
        "us-central1-docker.pkg.dev/my-proj/face-age/face-age-trainer:latest-gpu")


def test_every_python_module_and_make_target_in_the_steps_exists():
    text = yaml.safe_dump(BUILD["steps"])
    modules = re.findall(r"python -m ([\w.]+)", text)
    assert "deploy.submit_training" in modules
    for module in modules:
        assert module_exists(module), module


def _run_submit_step(mode: str, **overrides: str) -> subprocess.CompletedProcess:
    script = render(step("submit-training")["args"][1], {"_SUBMIT_TRAINING": mode, **overrides})
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


def test_submit_step_trains_the_tpu_variant_on_a_tpu_and_refuses_the_gpu_one():
    tpu = dict(_MACHINE_TYPE="ct5lp-hightpu-4t", _ACCELERATOR_TYPE="", _ACCELERATOR_COUNT="0")
    proc = _run_submit_step("dry_run", _VARIANT="tpu", **tpu)
    assert proc.returncode == 0, proc.stderr
    [pool] = json.loads(proc.stdout)["customJob"]["jobSpec"]["workerPoolSpecs"]
    assert pool["containerSpec"]["imageUri"].endswith("/face-age-trainer:latest-tpu")
    assert pool["containerSpec"]["args"][-2:] == ["--distribution_strategy=tpu", "--tpu=local"]
    refused = _run_submit_step("dry_run", _VARIANT="gpu", **tpu)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "is a TPU, but --image_uri=" in refused.stderr and "_VARIANT=tpu" in refused.stderr
