r"""Built-in SYNTHETIC sample data: face-like drawings with age labels - not photos of people.

    python -m preprocessing.synthetic --output_dir=DIR --num_images=500 --image_size=64 --seed=0 \
        [--corrupt_fraction=0.05] [--duplicate_fraction=0.02]

Writes DIR/images/*.jpg, DIR/labels.csv (``file_name,real_age,gender``, as in UTKFace) and
DIR/manifest.json. The drawings (``preprocessing.synthetic_faces``) carry a learnable age signal,
ages skewed like UTKFace's, and some blur. On request the sample also holds broken entries and
duplicates, and the manifest says which ``contract.reasons`` code preprocessing must give each.
The same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image

from contract import reasons
from contract.framing import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, image_size_problem
from preprocessing import synthetic_faces as faces

LABELS_FILE = "labels.csv"
MANIFEST_FILE = "manifest.json"
IMAGES_DIR = "images"
BLUR_SHARE = 0.15
JPEG_QUALITY = 90
_MAX_BLUR_AT_64PX = 2.5

# Broken kinds, in the order they are handed out (entry j gets kind j % 7), so that even a
# handful of broken entries covers file, decoder and label failures. kind -> expected reason.
BROKEN_KINDS = {
    "truncated_jpeg": reasons.TRUNCATED_IMAGE,
    "missing_file": reasons.MISSING_FILE,
    "age_not_a_number": reasons.BAD_AGE,
    "random_bytes": reasons.UNREADABLE_IMAGE,
    "empty_file": reasons.EMPTY_FILE,
    "age_negative": reasons.BAD_AGE,
    "age_over_max": reasons.BAD_AGE,
}
_NOT_A_NUMBER = ("unknown", "n/a", "thirty", "?")


@dataclasses.dataclass(frozen=True)
class BrokenEntry:
    file_name: str
    kind: str  # a key of BROKEN_KINDS
    reason: str  # the contract.reasons code a correct pipeline gives it


@dataclasses.dataclass(frozen=True)
class DuplicateEntry:
    file_name: str  # the copy
    source: str  # the good image whose bytes it repeats
    conflict: bool  # True: different age, so source and copy must both be rejected


@dataclasses.dataclass(frozen=True)
class SyntheticSample:
    """What ``generate`` wrote. File names are relative to ``images_dir``."""

    output_dir: str
    good: tuple[str, ...]  # num_images valid, distinct images with valid labels
    broken: tuple[BrokenEntry, ...]
    duplicates: tuple[DuplicateEntry, ...]
    blur_sigma: Mapping[str, float]  # every decodable image -> Gaussian sigma in px (0: sharp)

    @property
    def images_dir(self) -> str:
        return os.path.join(self.output_dir, IMAGES_DIR)

    @property
    def labels_csv(self) -> str:
        return os.path.join(self.output_dir, LABELS_FILE)

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.output_dir, MANIFEST_FILE)

    @property
    def expected_rejects(self) -> dict[str, str]:
        """file_name -> reason, for every entry a correct preprocessing job rejects.

        A conflicting duplicate takes its source down with it: with two ages for one image
        there is no way to tell which label is right. A same-label duplicate is not listed: the
        job keeps one copy (which one is up to it) and drops the other silently.
        """
        rejects = {b.file_name: b.reason for b in self.broken}
        for d in self.duplicates:
            if d.conflict:
                rejects[d.file_name] = rejects[d.source] = reasons.DUPLICATE_CONFLICT
        return rejects

    @property
    def expected_num_kept(self) -> int:
        return len(self.good) - sum(d.conflict for d in self.duplicates)

    @classmethod
    def from_manifest(cls, output_dir: str) -> SyntheticSample:
        """Reloads what an earlier ``generate`` (or the CLI) wrote to output_dir."""
        path = os.path.join(output_dir, MANIFEST_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: was {output_dir!r} written by "
                                    "preprocessing.synthetic?")
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
        return cls(output_dir=output_dir, good=tuple(m["good"]),
                   broken=tuple(BrokenEntry(b["file_name"], b["kind"], b["reason"])
                                for b in m["broken"]),
                   duplicates=tuple(DuplicateEntry(d["file_name"], d["source"], d["conflict"])
                                    for d in m["duplicates"]),
                   blur_sigma=MappingProxyType(dict(m["blur_sigma"])))


def _validate(num_images, image_size, corrupt_fraction, duplicate_fraction):
    # Messages use the CLI flag names; generate()'s arguments carry the same names.
    if not isinstance(num_images, (int, np.integer)) or num_images <= 0:
        raise ValueError(f"--num_images must be a positive integer, got {num_images!r}")
    if image_size_problem(image_size):
        raise ValueError(f"--image_size={image_size!r}: {image_size_problem(image_size)}")
    for name, value in (("corrupt_fraction", corrupt_fraction),
                        ("duplicate_fraction", duplicate_fraction)):
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise ValueError(f"--{name} must be in [0, 1), got {value!r}")


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # No EXIF, no timestamp, fixed quality: the bytes depend only on the pixels.
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return buf.getvalue()


class _Renderer:
    """Renders faces to JPEG bytes and guarantees no two drawn images share bytes."""

    def __init__(self, image_size: int):
        self.image_size = image_size
        self.seen: set[bytes] = set()

    def render(self, row: dict, blur_sigma: float) -> bytes:
        row = dict(row)
        while True:
            data = _jpeg(faces.render_face(row, self.image_size, blur_sigma))
            digest = hashlib.sha256(data).digest()
            if digest not in self.seen:  # a clash is astronomically rare; redraw details if so
                self.seen.add(digest)
                return data
            row["detail_seed"] = int(row["detail_seed"]) + 1


def _draw_faces(rng, n, renderer):
    """n fresh faces: (ages, genders, jpeg bytes, blur sigmas), all from rng."""
    ages = faces.sample_ages(rng, n)
    genders = rng.integers(0, 2, n)
    params = faces.sample_faces(rng, ages, genders)
    blurred = rng.random(n) < BLUR_SHARE
    # Blur strength relative to the image so "sigma 2 at 64 px" looks alike at 128 px.
    sigma = np.where(blurred, rng.uniform(0.5, _MAX_BLUR_AT_64PX, n), 0.0)
    sigma = np.round(sigma * renderer.image_size / 64, 3)
    data = [renderer.render(faces.face_row(params, i), float(sigma[i])) for i in range(n)]
    return ages, genders, data, sigma


def _truncate(jpeg: bytes) -> bytes:
    """Cuts a JPEG halfway through its entropy-coded data: headers parse, pixels do not."""
    sos = jpeg.find(b"\xff\xda")
    return jpeg[: sos + (len(jpeg) - sos) // 2]


def _random_bytes(rng, size) -> bytes:
    """Bytes that no image decoder recognises (resampled in the rare case PIL accepts them)."""
    while True:
        data = rng.bytes(size)
        try:
            Image.open(io.BytesIO(data)).load()
        except Exception:  # noqa: BLE001 - any decoder failure is what we want
            return data


def _bad_age(kind, rng) -> str:
    if kind == "age_not_a_number":
        return _NOT_A_NUMBER[int(rng.integers(len(_NOT_A_NUMBER)))]
    if kind == "age_negative":
        return str(-int(rng.integers(1, 30)))
    return str(int(rng.integers(130, 400)))  # above any sane --max_age (default 120)


def _conflicting_age(age: int, rng) -> int:
    offset = int(rng.integers(5, 21))
    return age + offset if age + offset <= faces.MAX_SAMPLE_AGE else age - offset


def generate(output_dir: str, num_images: int, image_size: int = 64, seed: int = 0,
             corrupt_fraction: float = 0.0, duplicate_fraction: float = 0.0,
             overwrite: bool = False) -> SyntheticSample:
    """Writes the synthetic sample to output_dir (local path) and returns what it wrote.

    Entries: ``num_images`` good faces, ``round(corrupt_fraction * num_images)`` broken ones
    (kinds handed out in BROKEN_KINDS order) and ``round(duplicate_fraction * num_images)``
    byte-identical copies of distinct good images under new names, alternately with the same
    label and with a conflicting age. Names are shuffled so that broken entries are not
    clustered. Independent random streams per part keep the good faces identical whatever the
    corrupt and duplicate fractions are.
    """
    _validate(num_images, image_size, corrupt_fraction, duplicate_fraction)
    out = Path(output_dir)
    images = out / IMAGES_DIR
    if images.is_dir() and any(images.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{images} is not empty; choose a new --output_dir or pass "
                                  "--overwrite to replace its .jpg files")
        for old in images.glob("*.jpg"):
            old.unlink()
    images.mkdir(parents=True, exist_ok=True)

    good_rng, broken_rng, dup_rng, name_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    renderer = _Renderer(image_size)
    n_broken = round(corrupt_fraction * num_images)
    n_dup = round(duplicate_fraction * num_images)
    total = num_images + n_broken + n_dup
    width = max(5, len(str(total - 1)))
    names = [f"face_{k:0{width}d}.jpg" for k in name_rng.permutation(total)]

    # rows: file_name -> (age label, gender, bytes or None when the file must be missing).
    rows: dict[str, tuple[str, int, bytes | None]] = {}
    ages, genders, data, sigma = _draw_faces(good_rng, num_images, renderer)
    good = names[:num_images]
    blur_sigma = {}
    for i, name in enumerate(good):
        rows[name] = (str(int(ages[i])), int(genders[i]), data[i])
        blur_sigma[name] = float(sigma[i])

    kinds = list(BROKEN_KINDS)
    b_ages, b_genders, b_data, b_sigma = _draw_faces(broken_rng, n_broken, renderer)
    broken = []
    for j, name in enumerate(names[num_images:num_images + n_broken]):
        kind = kinds[j % len(kinds)]
        age, payload = str(int(b_ages[j])), b_data[j]
        if kind == "truncated_jpeg":
            payload = _truncate(payload)
        elif kind == "random_bytes":
            payload = _random_bytes(broken_rng, len(payload))
        elif kind == "empty_file":
            payload = b""
        elif kind == "missing_file":
            payload = None
        else:  # a bad label on a perfectly good image
            age = _bad_age(kind, broken_rng)
            blur_sigma[name] = float(b_sigma[j])
        rows[name] = (age, int(b_genders[j]), payload)
        broken.append(BrokenEntry(name, kind, BROKEN_KINDS[kind]))

    duplicates = []
    sources = dup_rng.choice(num_images, size=n_dup, replace=False)
    for k, name in enumerate(names[num_images + n_broken:]):
        src = good[int(sources[k])]
        conflict = k % 2 == 1
        age = _conflicting_age(int(rows[src][0]), dup_rng) if conflict else int(rows[src][0])
        rows[name] = (str(age), rows[src][1], rows[src][2])
        blur_sigma[name] = blur_sigma[src]
        duplicates.append(DuplicateEntry(name, src, conflict))

    for name, (_, _, payload) in rows.items():
        if payload is not None:
            (images / name).write_bytes(payload)
    with open(out / LABELS_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file_name", "real_age", "gender"])
        for name in sorted(rows):
            writer.writerow([name, rows[name][0], rows[name][1]])

    sample = SyntheticSample(
        output_dir=str(out), good=tuple(sorted(good)),
        broken=tuple(sorted(broken, key=lambda b: b.file_name)),
        duplicates=tuple(sorted(duplicates, key=lambda d: d.file_name)),
        blur_sigma=MappingProxyType(dict(sorted(blur_sigma.items()))))
    _write_manifest(sample, seed, num_images, image_size, corrupt_fraction, duplicate_fraction)
    return sample


def _write_manifest(sample, seed, num_images, image_size, corrupt_fraction, duplicate_fraction):
    manifest = {
        "description": "SYNTHETIC face-like drawings made by preprocessing.synthetic; "
                       "not photos of people.",
        "config": {"seed": seed, "num_images": num_images, "image_size": image_size,
                   "corrupt_fraction": corrupt_fraction,
                   "duplicate_fraction": duplicate_fraction},
        "good": list(sample.good),
        "broken": [dataclasses.asdict(b) for b in sample.broken],
        "duplicates": [dict(dataclasses.asdict(d),
                            reason=reasons.DUPLICATE_CONFLICT if d.conflict else None)
                       for d in sample.duplicates],
        "expected_rejects": dict(sorted(sample.expected_rejects.items())),
        "expected_num_kept": sample.expected_num_kept,
        "blur_sigma": dict(sample.blur_sigma),
    }
    with open(sample.manifest_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def define_flags() -> None:
    """Declares the CLI flags. Called only when run as a program, so that importing this
    module next to preprocessing.run (which also has --output_dir) cannot clash."""
    from absl import flags

    flags.DEFINE_string("output_dir", None, "Directory to write images/, labels.csv and "
                        "manifest.json to.", required=True)
    flags.DEFINE_integer("num_images", 500, "Number of good (valid, distinct) images.")
    flags.DEFINE_integer("image_size", 64, "Side of the square images in pixels "
                         f"({MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE}).")
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same bytes.")
    flags.DEFINE_float("corrupt_fraction", 0.0, "Broken entries to add, as a fraction of "
                       "num_images, in [0, 1).")
    flags.DEFINE_float("duplicate_fraction", 0.0, "Duplicate images to add, as a fraction of "
                       "num_images, in [0, 1).")
    flags.DEFINE_bool("overwrite", False, "Replace the .jpg files of an existing output_dir.")
    flags.register_validator("num_images", lambda v: v > 0,
                             "--num_images must be a positive integer")
    flags.register_validator("image_size", lambda v: image_size_problem(v) is None,
                             f"--image_size must be in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}")
    for name in ("corrupt_fraction", "duplicate_fraction"):
        flags.register_validator(name, lambda v: 0.0 <= v < 1.0, f"--{name} must be in [0, 1)")


def main(argv) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        sample = generate(f.output_dir, f.num_images, f.image_size, f.seed, f.corrupt_fraction,
                          f.duplicate_fraction, overwrite=f.overwrite)
    except (ValueError, FileExistsError) as e:
        sys.exit(f"ERROR: {e}")
    blurred = sum(s > 0 for s in sample.blur_sigma.values())
    print(f"wrote {len(sample.good)} good + {len(sample.broken)} broken + "
          f"{len(sample.duplicates)} duplicate synthetic entries ({blurred} blurred) to "
          f"{sample.output_dir}; expected kept after preprocessing: {sample.expected_num_kept}")


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)

