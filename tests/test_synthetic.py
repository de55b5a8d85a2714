"""Tests of the built-in synthetic sample generator (preprocessing.synthetic)."""

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from contract import reasons
from preprocessing import synthetic
from preprocessing.synthetic_faces import MAX_SAMPLE_AGE, age_probabilities

REPO = Path(__file__).resolve().parents[1]


def read_labels(sample):
    with open(sample.labels_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows, {r["file_name"]: r for r in rows}


def file_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample600(tmp_path_factory):
    """600 good faces, the size the learnability test needs; shared by the distribution tests."""
    return synthetic.generate(str(tmp_path_factory.mktemp("s600")), 600, image_size=64, seed=0)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    # 40 * 0.35 = 14 broken entries: each of the 7 kinds exactly twice; 40 * 0.2 = 8 duplicates.
    return synthetic.generate(str(tmp_path_factory.mktemp("messy")), 40, image_size=32, seed=3,
                              corrupt_fraction=0.35, duplicate_fraction=0.2)


def test_good_images_are_readable_distinct_and_labelled(messy):
    rows, by_name = read_labels(messy)
    assert list(rows[0]) == ["file_name", "real_age", "gender"]
    assert len(rows) == 40 + 14 + 8 == len(by_name)
    assert len(messy.good) == 40
    contents = set()
    for name in messy.good:
        data = (Path(messy.images_dir) / name).read_bytes()
        img = Image.open(io.BytesIO(data))
        img.load()
        assert img.size == (32, 32) and img.mode == "RGB"
        contents.add(data)
        assert 0 <= int(by_name[name]["real_age"]) <= MAX_SAMPLE_AGE
        assert by_name[name]["gender"] in ("0", "1")
    assert len(contents) == 40


def test_broken_entries_fail_the_way_the_manifest_says(messy):
    _, by_name = read_labels(messy)
    assert Counter(b.kind for b in messy.broken) == {k: 2 for k in synthetic.BROKEN_KINDS}
    for b in messy.broken:
        path = Path(messy.images_dir) / b.file_name
        assert b.reason == synthetic.BROKEN_KINDS[b.kind] and b.reason in reasons.ALL
        if b.kind == "missing_file":
            assert not path.exists()
        elif b.kind == "empty_file":
            assert path.stat().st_size == 0
        elif b.kind == "random_bytes":
            with pytest.raises(UnidentifiedImageError):
                Image.open(path)
        elif b.kind == "truncated_jpeg":
            img = Image.open(path)  # the header still parses ...
            assert img.format == "JPEG"
            with pytest.raises(OSError, match="truncated"):
                img.load()  # ... the pixels do not
        else:
            Image.open(path).load()  # a good image under a bad label
            age = by_name[b.file_name]["real_age"]
            if b.kind == "age_not_a_number":
                with pytest.raises(ValueError):
                    float(age)
            elif b.kind == "age_negative":
                assert float(age) < 0
            else:
                assert float(age) > 120


def test_few_broken_entries_still_cover_several_kinds(tmp_path):
    sample = synthetic.generate(str(tmp_path), 30, image_size=32, corrupt_fraction=0.1)
    assert len(sample.broken) == round(0.1 * 30) == 3
    assert len({synthetic.BROKEN_KINDS[b.kind] for b in sample.broken}) == 3


def test_duplicates_repeat_bytes_and_manifest_gives_expected_outcome(messy):
    _, by_name = read_labels(messy)
    assert len(messy.duplicates) == 8
    assert sum(d.conflict for d in messy.duplicates) == 4
    images = Path(messy.images_dir)
    for d in messy.duplicates:
        assert d.source in messy.good
        assert (images / d.file_name).read_bytes() == (images / d.source).read_bytes()
        copy, src = by_name[d.file_name], by_name[d.source]
        assert copy["gender"] == src["gender"]
        assert (copy["real_age"] != src["real_age"]) == d.conflict
        if d.conflict:
            assert messy.expected_rejects[d.file_name] == reasons.DUPLICATE_CONFLICT
            assert messy.expected_rejects[d.source] == reasons.DUPLICATE_CONFLICT
        else:
            assert d.file_name not in messy.expected_rejects
    assert len(messy.expected_rejects) == 14 + 2 * 4
    assert messy.expected_num_kept == 40 - 4

    manifest = json.loads(Path(messy.manifest_path).read_text())
    assert manifest["expected_rejects"] == messy.expected_rejects
    assert manifest["expected_num_kept"] == 36
    assert {d["reason"] for d in manifest["duplicates"]} == {None, reasons.DUPLICATE_CONFLICT}
    assert synthetic.SyntheticSample.from_manifest(messy.output_dir) == messy


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kwargs = dict(num_images=20, image_size=32, corrupt_fraction=0.2, duplicate_fraction=0.1)
    a = synthetic.generate(str(tmp_path / "a"), seed=7, **kwargs)
    synthetic.generate(str(tmp_path / "b"), seed=7, **kwargs)
    c = synthetic.generate(str(tmp_path / "c"), seed=8, **kwargs)
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")

    def good_images(sample):
        return {(Path(sample.images_dir) / n).read_bytes() for n in sample.good}

    assert not good_images(a) & good_images(c)
    # Broken and duplicate entries come from their own streams: adding them leaves the good
    # faces unchanged, so a clean and a messy sample of one seed are comparable.
    clean = synthetic.generate(str(tmp_path / "clean"), 20, image_size=32, seed=7)
    assert good_images(clean) == good_images(a)


def test_age_distribution_is_skewed_like_utkface(sample600):
    _, by_name = read_labels(sample600)
    ages = np.array([int(by_name[n]["real_age"]) for n in sample600.good])
    for share_of in (lambda lo, hi: np.mean((ages >= lo) & (ages < hi)),
                     lambda lo, hi: age_probabilities()[lo:hi].sum()):
        assert share_of(20, 40) > 0.40
        assert 0.02 < share_of(60, 200) < 0.15
        assert share_of(0, 13) > 0.08  # some children
    assert ages.min() >= 0 and ages.max() <= MAX_SAMPLE_AGE


def test_about_15_percent_are_blurred_and_blur_is_real(sample600):
    sigma = np.array([sample600.blur_sigma[n] for n in sample600.good])
    assert 0.08 < np.mean(sigma > 0) < 0.22
    assert sigma.max() <= 2.5

    def laplacian_variance(name):
        g = np.asarray(Image.open(Path(sample600.images_dir) / name).convert("L"), np.float64)
        lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
        return lap.var()

    pairs = list(zip(sample600.good, sigma, strict=True))
    blurred = [laplacian_variance(n) for n, s in pairs if s > 1.5]
    sharp = [laplacian_variance(n) for n, s in pairs if s == 0][:100]
    assert np.median(blurred) < 0.5 * np.median(sharp)


def test_age_signal_is_learnable_by_ridge_on_16px_thumbnails(sample600):
    _, by_name = read_labels(sample600)
    names = sample600.good  # sorted by shuffled file name, so ages are not ordered
    x = np.stack([np.asarray(Image.open(Path(sample600.images_dir) / n).convert("L")
                             .resize((16, 16), Image.Resampling.BILINEAR), np.float64).ravel()
                  for n in names])
    y = np.array([float(by_name[n]["real_age"]) for n in names])
    x_train, x_test, y_train, y_test = x[:450], x[450:], y[:450], y[450:]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mean) / std, (x_test - mean) / std
    w = np.linalg.solve(a.T @ a + 10.0 * np.eye(a.shape[1]), a.T @ (y_train - y_train.mean()))
    ridge_mae = np.abs(b @ w + y_train.mean() - y_test).mean()
    median_mae = np.abs(np.median(y_train) - y_test).mean()
    # Measured 0.63-0.67 over seeds 0-3; a generator without an age signal sits near 1.0.
    assert ridge_mae < 0.8 * median_mae, (ridge_mae, median_mae)


def test_existing_output_is_not_silently_mixed(tmp_path):
    synthetic.generate(str(tmp_path), 5, image_size=32)
    with pytest.raises(FileExistsError, match="overwrite"):
        synthetic.generate(str(tmp_path), 3, image_size=32)
    sample = synthetic.generate(str(tmp_path), 3, image_size=32, overwrite=True)
    assert len(list(Path(sample.images_dir).glob("*.jpg"))) == 3


@pytest.mark.parametrize("kwargs, flag", [
    (dict(num_images=0), "num_images"),
    (dict(num_images=10, corrupt_fraction=1.0), "corrupt_fraction"),
    (dict(num_images=10, duplicate_fraction=-0.1), "duplicate_fraction"),
    (dict(num_images=10, image_size=8), "image_size"),
    (dict(num_images=10, image_size=1025), "--image_size=1025: expected an integer in 32..1024"),
])
def test_generate_rejects_bad_arguments(tmp_path, kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        synthetic.generate(str(tmp_path), **kwargs)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "preprocessing.synthetic", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_writes_the_sample(tmp_path):
    out = tmp_path / "cli"
    proc = run_cli(f"--output_dir={out}", "--num_images=12", "--image_size=32", "--seed=4",
                   "--corrupt_fraction=0.25", "--duplicate_fraction=0.25")
    assert proc.returncode == 0, proc.stderr
    assert "12 good + 3 broken + 3 duplicate" in proc.stdout
    sample = synthetic.SyntheticSample.from_manifest(str(out))
    assert len(sample.good) == 12 and len(sample.broken) == 3 and len(sample.duplicates) == 3
    same = synthetic.generate(str(tmp_path / "lib"), 12, image_size=32, seed=4,
                              corrupt_fraction=0.25, duplicate_fraction=0.25)
    assert file_bytes(out) == file_bytes(same.output_dir)
    assert "synthetic" in run_cli("--help").stdout.lower()


@pytest.mark.parametrize("bad_flag", ["--num_images=0", "--corrupt_fraction=1.0",
                                      "--corrupt_fraction=-0.5"])
def test_cli_bad_flags_fail_naming_the_flag(tmp_path, bad_flag):
    proc = run_cli(f"--output_dir={tmp_path}", bad_flag)
    assert proc.returncode != 0
    assert bad_flag.split("=")[0] in proc.stderr, proc.stderr
    assert not (tmp_path / "labels.csv").exists()
