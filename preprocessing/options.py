"""The job's own flags, declared once, turned into a frozen ``JobConfig`` and validated up front.

Everything that is not one of these flags goes to Beam's ``PipelineOptions`` (``--runner``,
``--direct_num_workers``, ``--project``, ...), as in Beam's wordcount example. ``parse`` raises
``OptionsError`` naming the flag before any pipeline work starts: a missing path, ratios that do
not sum to 1 or a Dataflow run without a gs:// temp_location should cost a second, not a
half-finished job.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from dataclasses import dataclass

from contract import files, limits, schema
from contract.framing import (
    FACE_MODES,
    MULTI_FACE_POLICIES,
    RESIZE_MODES,
    Framing,
    FramingError,
    image_size_problem,
)
from imaging.images import ImageConfig
from preprocessing import labels

# The job's flags that name data: Dataflow workers must reach them, so they must be gs://.
DATA_FLAGS = ("labels", "images", "output_dir")
# What Dataflow workers install for --face=detect|align (setup.py's [faces] extra and
# TensorFlow; tests/test_deploy_dataflow.py pins it to setup.py). Relative to the repository.
FACES_REQUIREMENTS = "requirements-faces.txt"
_JOB_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")  # Dataflow's job name rule


class OptionsError(ValueError):
    """A bad flag; the message names it."""


@dataclass(frozen=True)
class JobConfig:
    images: str
    output_dir: str
    labels: str | None = None
    label_format: str = "csv"
    image: ImageConfig = ImageConfig()
    max_age: float = 120.0
    split_ratios: tuple = (0.8, 0.1, 0.1)
    group_by: str | None = None
    num_shards: int = 0  # per split; 0 = automatic (~128 MB per shard)
    max_file_bytes: int = limits.MAX_READ_BYTES  # larger input files are refused unread
    # The labels' extra columns in header order: set by ``parse`` from the one read of the
    # label headers that ``validate`` does, so the job does not read them again.
    extra_columns: tuple = ()
    face: str = "none"  # none: each photo is the face crop; detect | align: find it (face_stage)
    multi_face: str = "largest"  # with several faces: keep the largest, or reject the photo


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m preprocessing.run",
        description="Labelled face images -> validated, deduplicated, split, sharded TFRecords.",
        epilog="Every other flag goes to Beam's PipelineOptions: --runner, "
               "--direct_running_mode, --direct_num_workers, --project, --region, "
               "--temp_location, --setup_file, ...")
    p.add_argument("--labels", help="labels CSV (csv), the APPA-REAL folder holding "
                   "gt_avg_*.csv (appa_real); not used with utkface")
    p.add_argument("--images", required=True, help="folder of images (local or gs://)")
    p.add_argument("--output_dir", required=True, help="where shards, stats.json, errors/ go")
    p.add_argument("--label_format", choices=labels.FORMATS, default="csv")
    p.add_argument("--image_size", type=int, default=224, help="records are SIZE x SIZE JPEGs")
    p.add_argument("--resize", choices=RESIZE_MODES, default="crop",
                   help="crop: fill the square and cut the overflow; pad: fit inside, pad black")
    p.add_argument("--margin", type=float, default=0.0,
                   help="fraction of width/height trimmed from each side before resizing "
                        "(inputs are face crops already: this tightens the crop)")
    p.add_argument("--jpeg_quality", type=int, default=90)
    p.add_argument("--max_pixels", type=int, default=limits.MAX_PIXELS,
                   help="decompression-bomb guard: larger images are rejected undecoded")
    p.add_argument("--max_aspect_ratio", type=float, default=limits.MAX_ASPECT_RATIO,
                   help="long side / short side above which an image is rejected undecoded "
                        "(its resize to the square would grow with the ratio)")
    p.add_argument("--max_file_bytes", type=int, default=limits.MAX_READ_BYTES,
                   help="larger input files are rejected; no more than this is read")
    p.add_argument("--max_age", type=float, default=120.0)
    p.add_argument("--split_ratios", default="0.8,0.1,0.1",
                   help="train,validation,test fractions summing to 1 (ignored by appa_real, "
                        "which keeps its own split)")
    p.add_argument("--group_by", default=None,
                   help="label column whose value decides the split (e.g. a person id), so "
                        "one group never lands in two splits")
    p.add_argument("--num_shards", type=int, default=0,
                   help="shards per split; 0 = automatic, about 128 MB each")
    p.add_argument("--face", default="none",
                   help="none: each image is a face crop already; detect: crop the face the "
                        "detector finds; align: rotate its eyes level and scale it by the "
                        "eye-to-mouth distance first. Then --margin and --resize frame it. "
                        "Needs the [faces] extra (and TensorFlow)")
    p.add_argument("--multi_face", default=None,
                   help="with --face, a photo with several faces: largest (default) keeps the "
                        "largest face, reject makes it a dead letter multi_face")
    return p


def parse(argv: list[str] | None) -> tuple[JobConfig, object]:
    """argv -> (validated JobConfig, Beam PipelineOptions)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    known, beam_args = _parser().parse_known_args(argv)
    pipeline_options = PipelineOptions(beam_args)
    _reject_unknown_flags(pipeline_options, beam_args)
    config = JobConfig(
        labels=known.labels,
        images=known.images,
        output_dir=known.output_dir,
        label_format=known.label_format,
        image=ImageConfig(framing=_framing(known), jpeg_quality=known.jpeg_quality),
        max_age=known.max_age,
        split_ratios=_ratios(known.split_ratios),
        group_by=known.group_by,
        num_shards=known.num_shards,
        max_file_bytes=known.max_file_bytes,
        face=known.face,
        multi_face=known.multi_face or "largest",
    )
    if known.multi_face is not None and known.face == "none":
        raise OptionsError(f"--multi_face={known.multi_face}: only used with --face=detect or "
                           "--face=align")
    # Cheap checks first, no IO.
    validate_pipeline_options(pipeline_options, {name: getattr(config, name)
                                                 for name in DATA_FLAGS}, face=config.face)
    config = dataclasses.replace(config, extra_columns=tuple(validate(config)))
    _check_face_support(config, pipeline_options)
    return config, pipeline_options


def _framing(known: argparse.Namespace) -> Framing:
    try:
        return Framing(image_size=known.image_size, resize=known.resize, margin=known.margin,
                       max_pixels=known.max_pixels, max_aspect_ratio=known.max_aspect_ratio)
    except FramingError as e:
        raise OptionsError(f"--{e}") from None  # the message starts with the field's name


def _check_face_support(config: JobConfig, pipeline_options) -> None:
    """A local run with --face needs the detector here; Dataflow's workers get it from
    FACES_REQUIREMENTS (validate_pipeline_options)."""
    import importlib.util

    from apache_beam.options.pipeline_options import StandardOptions

    runner = pipeline_options.view_as(StandardOptions).runner or "DirectRunner"
    if config.face == "none" or "dataflow" in runner.lower():
        return
    missing = [m for m in ("mtcnn", "tensorflow") if importlib.util.find_spec(m) is None]
    if missing:
        raise OptionsError(f"--face={config.face}: {', '.join(missing)} not installed; "
                           "pip install -e '.[faces,cpu]' (the detector's extra and TensorFlow)")


def _ratios(text: str) -> tuple:
    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise OptionsError(
            f"--split_ratios={text!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(ratios) != len(schema.SPLITS) or any(not math.isfinite(r) or r < 0 for r in ratios):
        raise OptionsError(f"--split_ratios={text!r}: expected {len(schema.SPLITS)} non-negative "
                           f"numbers for {','.join(schema.SPLITS)}")
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise OptionsError(f"--split_ratios={text!r} sums to {sum(ratios):g}, not 1")
    return ratios


def _reject_unknown_flags(pipeline_options, beam_args: list[str]) -> None:
    # Beam silently drops flags it does not know, so a typo (--image_szie) would be ignored.
    known = pipeline_options.get_all_options(retain_unknown_options=False)
    everything = pipeline_options.get_all_options(retain_unknown_options=True)
    unknown = sorted(set(everything) - set(known))
    if unknown:
        raise OptionsError(f"unknown flag(s): {', '.join('--' + u for u in unknown)}")


def validate(config: JobConfig) -> list[str]:
    """Checks values and that the inputs exist; returns the labels' extra columns, in header
    order (reads at most the label files' first line)."""
    image = config.image
    if config.face not in FACE_MODES:
        raise OptionsError(f"--face={config.face}: expected one of {', '.join(FACE_MODES)}")
    if config.multi_face not in MULTI_FACE_POLICIES:
        raise OptionsError(f"--multi_face={config.multi_face}: expected one of "
                           f"{', '.join(MULTI_FACE_POLICIES)}")
    if image_size_problem(image.framing.image_size):
        raise OptionsError(f"--image_size={image.framing.image_size}: "
                           f"{image_size_problem(image.framing.image_size)}")
    if not 1 <= image.jpeg_quality <= 100:
        raise OptionsError(f"--jpeg_quality={image.jpeg_quality}: expected 1..100")
    if config.max_file_bytes <= 0:
        raise OptionsError(f"--max_file_bytes={config.max_file_bytes}: expected > 0")
    if config.num_shards < 0:
        raise OptionsError(f"--num_shards={config.num_shards}: expected >= 0 (0 = automatic)")
    if not config.max_age > 0:
        raise OptionsError(f"--max_age={config.max_age}: expected > 0")
    if not _is_directory(config.images):
        raise OptionsError(f"--images={config.images!r}: no such folder (or it is empty)")
    if os.path.abspath(config.output_dir) == os.path.abspath(config.images):
        raise OptionsError("--output_dir must differ from --images: old shards are deleted there")
    _check_output_dir(config.output_dir)
    extra_columns = _label_columns(config)
    columns = set(extra_columns)
    reserved = sorted(columns & set(schema.RESERVED_COLUMNS))
    if reserved:
        # Refused, not renamed silently: the user's own name would then appear nowhere.
        raise OptionsError(
            f"--labels: column(s) {reserved} cannot be kept: the records' metadata and "
            f"predictions.csv use the names {list(schema.RESERVED_COLUMNS)}; rename the "
            f"column(s) in the label file (e.g. {reserved[0]} -> person_{reserved[0]})"
            + (" and pass the new name to --group_by" if config.group_by in reserved else ""))
    if config.group_by is not None and config.group_by not in columns:
        raise OptionsError(f"--group_by={config.group_by!r}: not a label column; the labels "
                           f"have {sorted(columns)}")
    return extra_columns


def _check_output_dir(path: str) -> None:
    """A local --output_dir that is a file, or inside one, fails here in one line; whether it
    can be written is found by taking its lock (lock.py), the job's first write."""
    if path.startswith("gs://"):
        return
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        where = "is a file" if probe == os.path.abspath(path) else f"is inside the file {probe}"
        raise OptionsError(f"--output_dir={path}: {where}, not a folder")


def _label_columns(config: JobConfig) -> list[str]:
    """The extra columns the labels offer; raises OptionsError for missing or headless files."""
    if config.label_format == "utkface" and config.labels:
        raise OptionsError("--labels is not used with --label_format=utkface (the labels "
                           "are in the image file names); drop it")
    if config.label_format == "utkface":
        return list(labels.UTKFACE_COLUMNS)
    if not config.labels:
        raise OptionsError(f"--labels is required with --label_format={config.label_format}")
    for _, path, _, _ in labels.sources(config.label_format, config.labels, config.images):
        if not files.exists(path):
            raise OptionsError(f"--labels: {path!r} does not exist")
    try:
        return labels.extra_columns(config.label_format, config.labels, config.images)
    except labels.LabelError as e:
        raise OptionsError(f"--labels: {e}") from None


def validate_pipeline_options(pipeline_options, paths: dict, cwd: str | os.PathLike = ".",
                              face: str = "none") -> None:
    """The Dataflow checks, in one place: preprocessing.run runs them before any work, and
    deploy.dataflow before it prints or launches the command. Raises OptionsError naming the flag;
    does nothing for other runners (local runs may use local paths).

    ``paths`` maps the job's data flags (DATA_FLAGS) to their values (None when not given);
    ``cwd`` is where the job starts, against which --setup_file and --requirements_file resolve;
    ``face`` is --face: the detector's packages must then reach the workers.
    Why up front: a Dataflow job with a local path, a missing region or code that never reached
    the workers fails only after minutes of worker start-up.
    """
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )

    runner = pipeline_options.view_as(StandardOptions).runner or "DirectRunner"
    if "dataflow" not in runner.lower():
        return
    # The rules for project IDs, region names and gs:// URIs that Vertex AI jobs check too.
    from contract import cloud as rules

    cloud, setup = pipeline_options.view_as(GoogleCloudOptions), pipeline_options.view_as(
        SetupOptions)
    try:
        rules.check_project_region(cloud.project, cloud.region)
        rules.require_gs(cloud.temp_location, "temp_location", "Dataflow")
        if cloud.staging_location:
            rules.require_gs(cloud.staging_location, "staging_location", "Dataflow")
        for name in DATA_FLAGS:
            if paths.get(name):
                rules.require_gs(paths[name], name, "Dataflow workers")
    except ValueError as e:
        raise OptionsError(str(e)) from None
    if cloud.job_name and not _JOB_NAME.match(cloud.job_name):
        raise OptionsError(f"--job_name={cloud.job_name!r}: lowercase letters, digits and '-', "
                           "starting with a letter")
    if not setup.setup_file:
        raise OptionsError("--setup_file=./setup.py is required with DataflowRunner: it ships "
                           "the preprocessing package to the workers")
    if not os.path.isfile(os.path.join(cwd, setup.setup_file)):
        raise OptionsError(f"--setup_file={setup.setup_file}: no such file under "
                           f"{os.path.abspath(cwd)}")
    if setup.save_main_session:
        raise OptionsError("--save_main_session: not needed and fragile here; the package goes "
                           "to the workers through --setup_file")
    if setup.requirements_file and not os.path.isfile(os.path.join(cwd, setup.requirements_file)):
        raise OptionsError(f"--requirements_file={setup.requirements_file}: no such file under "
                           f"{os.path.abspath(cwd)}")
    if face != "none":
        _check_worker_face_requirements(setup.requirements_file, cwd, face)
    workers = pipeline_options.view_as(WorkerOptions).max_num_workers
    if workers is not None and workers < 1:
        raise OptionsError(f"--max_num_workers={workers}: must be >= 1")


def _check_worker_face_requirements(requirements_file, cwd, face: str) -> None:
    """Dataflow installs only setup.py's base requirements: --face needs a requirements file
    naming the detector (mtcnn) and TensorFlow, FACES_REQUIREMENTS or the user's own."""
    hint = (f"--face={face} on Dataflow: the workers need the [faces] extra and TensorFlow; "
            f"pass --requirements_file={FACES_REQUIREMENTS} (python -m deploy.dataflow adds it)")
    if not requirements_file:
        raise OptionsError(hint)
    with open(os.path.join(cwd, requirements_file), encoding="utf-8") as f:
        names = {re.split(r"[\s\[<>=!~;@]", line.strip(), maxsplit=1)[0].lower()
                 for line in f if line.strip() and not line.lstrip().startswith("#")}
    missing = [n for n in ("mtcnn", "tensorflow")
               if not any(name == n or name.startswith(n + "-") for name in names)]
    if missing:
        raise OptionsError(f"--requirements_file={requirements_file} lacks {missing}: {hint}")


def _is_directory(path: str) -> bool:
    if not path.startswith("gs://"):
        return os.path.isdir(path)
    # GCS has no folders: a "folder" exists when at least one object sits under it.
    return files.exists(path.rstrip("/") + "/")
