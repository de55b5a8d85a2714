"""stats.json, the summary preprocessing writes last next to the shards, as a typed value.

Every reader goes through ``read``/``from_json``, which validate each field and name the file
and the field in their errors. Keys an older writer did not record load with the defaults
below (the framing and limits preprocessing applied before it recorded them); keys a newer
writer of the same ``version`` adds are ignored. No TensorFlow: the Beam job writes it too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from contract import files, limits
from contract.framing import (
    DEFAULT_MARGIN,
    DEFAULT_RESIZE,
    FACE_MODES,
    MULTI_FACE_POLICIES,
    margin_problem,
)

FILE = "stats.json"
VERSION = 1  # bump when a field changes meaning; files without "version" are version 1


@dataclass(frozen=True)
class SplitStats:
    """One split's shards: records, files, bytes, records per shard index, ages written."""
    count: int
    num_shards: int | None = None  # None: an older output that did not record it
    num_bytes: int | None = None
    shard_lengths: tuple[int, ...] | None = None
    age_histogram: tuple[int, ...] = ()  # counts of floor(age) for 0..max_age
    mean_age: float | None = None  # exact mean of the ages written; None when empty
    shards: Mapping[str, int] | None = None  # file name -> bytes, when recorded


@dataclass(frozen=True)
class FaceStats:
    """How faces were found (--face, --multi_face) and the photos that policy decided about."""
    mode: str  # detect | align (a --face=none run records no FaceStats)
    multi_face: str  # largest | reject
    no_face: int = 0  # photos rejected without a face (also in rejects)
    multi_face_kept: int = 0  # photos with several faces whose largest face was written
    multi_face_rejected: int = 0  # photos with several faces rejected (also in rejects)


@dataclass(frozen=True)
class Stats:
    """OUT/stats.json. ``splits`` is required; every other field has a documented default."""
    splits: Mapping[str, SplitStats]
    version: int = VERSION
    image_size: int = 0  # records are image_size square; 0 = not recorded
    extra_columns: tuple[str, ...] = ()  # the extra/<name> keys every record carries
    max_age: float = 0  # 0 = not recorded
    resize: str = DEFAULT_RESIZE
    margin: float = DEFAULT_MARGIN
    max_pixels: int = limits.MAX_PIXELS  # the limits the records passed
    max_aspect_ratio: float = limits.MAX_ASPECT_RATIO
    rejects: Mapping[str, int] = field(default_factory=dict)  # reason code -> count
    duplicates_merged: int = 0
    inputs: int | None = None  # written + rejected + merged
    blur_quantiles: Mapping[str, float] = field(default_factory=dict)
    blur_deciles: tuple[float, ...] = ()
    jpeg_quality: int | None = None
    label_format: str | None = None
    split_ratios: tuple[float, ...] | None = None
    group_by: str | None = None
    id: str | None = None  # how record ids are made
    tfds_metadata: str | None = None
    shards: Mapping[str, int] | None = None  # file name -> bytes, for every split
    subset_of: Mapping | None = None  # experiments.subset_data's source
    # None: the records are the photos themselves (--face=none, or written before faces were
    # found). Added without a version bump: a reader that ignores it reads valid face crops.
    faces: FaceStats | None = None

    def split(self, name: str) -> SplitStats | None:
        return self.splits.get(name)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        return json.loads(json.dumps(out))  # tuples -> lists, as the file holds them

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> Stats:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is not valid JSON ({e})") from None
        return cls.from_dict(value, source)

    @classmethod
    def from_dict(cls, value, source: str = FILE) -> Stats:
        """Validates a parsed stats.json; ValueError naming ``source`` and the field."""
        return _parse(value, source)


def read(data_dir: str) -> Stats:
    """DATA_DIR/stats.json (local or gs://); FileNotFoundError or ValueError naming the file."""
    path = data_dir.rstrip("/") + "/" + FILE
    try:
        text = files.read_text(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: is {data_dir!r} the output_dir of preprocessing.run?") from None
    return Stats.from_json(text, path)


class _Fields:
    """Reads typed fields of one JSON object; errors name the file and the field's path."""

    def __init__(self, value, source: str, where: str = ""):
        self.source, self.where = source, where
        if not isinstance(value, dict):
            raise ValueError(f"{source}: field {where or '(top level)'!r} must be a JSON object")
        self.value = value

    def fail(self, key: str, problem: str):
        raise ValueError(f"{self.source}: field {self.path(key)!r} {problem}")

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key, kind, default, *, required=False, minimum=None):
        if self.value.get(key) is None:
            if required:
                self.fail(key, "is missing")
            return default
        got = self.value[key]
        if not _is(got, kind) or (minimum is not None and got < minimum):
            need = f"{kind.__name__}" + (f" >= {minimum}" if minimum is not None else "")
            self.fail(key, f"must be a {need}, got {got!r}")
        return float(got) if kind is float else got

    def seq(self, key, kind, default):
        got = self.get(key, list, default)
        if got is default:
            return default
        for i, item in enumerate(got):
            if not _is(item, kind):
                self.fail(f"{key}[{i}]", f"must be a {kind.__name__}, got {item!r}")
        return tuple(float(x) if kind is float else x for x in got)

    def table(self, key, kind, default):
        got = self.get(key, dict, default)
        if got is default:
            return default
        for name, item in got.items():
            if not _is(item, kind):
                self.fail(f"{key}.{name}", f"must be a {kind.__name__}, got {item!r}")
        return {k: float(v) if kind is float else v for k, v in got.items()}


def _is(value, kind) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    return isinstance(value, kind)


def _split(value, source: str, name: str) -> SplitStats:
    f = _Fields(value, source, f"splits.{name}")
    return SplitStats(
        count=f.get("count", int, 0, required=True, minimum=0),
        num_shards=f.get("num_shards", int, None, minimum=0),
        num_bytes=f.get("num_bytes", int, None, minimum=0),
        shard_lengths=f.seq("shard_lengths", int, None),
        age_histogram=f.seq("age_histogram", int, ()),
        mean_age=f.get("mean_age", float, None),
        shards=f.table("shards", int, None))


def _faces(value, source: str) -> FaceStats | None:
    if value is None:
        return None
    f = _Fields(value, source, "faces")
    mode = f.get("mode", str, None, required=True)
    if mode not in FACE_MODES[1:]:
        f.fail("mode", f"is {mode!r}: expected one of {', '.join(FACE_MODES[1:])}")
    policy = f.get("multi_face", str, None, required=True)
    if policy not in MULTI_FACE_POLICIES:
        f.fail("multi_face", f"is {policy!r}: expected one of {', '.join(MULTI_FACE_POLICIES)}")
    return FaceStats(mode=mode, multi_face=policy, **{
        key: f.get(key, int, 0, minimum=0)
        for key in ("no_face", "multi_face_kept", "multi_face_rejected")})


def _parse(value, source: str) -> Stats:
    f = _Fields(value, source)
    version = f.get("version", int, VERSION, minimum=1)
    if version > VERSION:
        f.fail("version", f"is {version}: this code reads stats.json up to version {VERSION} "
                          "(written by a newer preprocessing.run: update this checkout)")
    splits = f.get("splits", dict, None, required=True)
    margin = f.get("margin", float, DEFAULT_MARGIN)
    if margin_problem(margin):
        f.fail("margin", f"is {margin!r}: {margin_problem(margin)}")
    return Stats(
        splits={str(k): _split(v, source, k) for k, v in splits.items()},
        version=version,
        image_size=f.get("image_size", int, 0, minimum=0),
        extra_columns=f.seq("extra_columns", str, ()),
        max_age=f.get("max_age", float, 0, minimum=0),
        resize=f.get("resize", str, DEFAULT_RESIZE),
        margin=margin,
        max_pixels=f.get("max_pixels", int, limits.MAX_PIXELS, minimum=1),
        max_aspect_ratio=f.get("max_aspect_ratio", float, limits.MAX_ASPECT_RATIO, minimum=1),
        rejects=f.table("rejects", int, {}),
        duplicates_merged=f.get("duplicates_merged", int, 0, minimum=0),
        inputs=f.get("inputs", int, None, minimum=0),
        blur_quantiles=f.table("blur_quantiles", float, {}),
        blur_deciles=f.seq("blur_deciles", float, ()),
        jpeg_quality=f.get("jpeg_quality", int, None),
        label_format=f.get("label_format", str, None),
        split_ratios=f.seq("split_ratios", float, None),
        group_by=f.get("group_by", str, None),
        id=f.get("id", str, None),
        tfds_metadata=f.get("tfds_metadata", str, None),
        shards=f.table("shards", int, None),
        subset_of=f.get("subset_of", dict, None),
        faces=_faces(value.get("faces"), source))
