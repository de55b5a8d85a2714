"""Tests of the scene generator (preprocessing.scenes) on the public-domain astronaut portrait."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from preprocessing import scenes

pytest.importorskip("skimage")  # the dev extra's; it ships the astronaut portrait

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sources():
    return [scenes.astronaut()]


@pytest.fixture(scope="module")
def series(sources):
    return [scenes.scene(sources, 7, i) for i in range(24)]


def eye_tilt(eyes):
    (lx, ly), (rx, ry) = eyes
    return math.degrees(math.atan2(-(ry - ly), rx - lx))


def test_same_seed_and_index_give_the_same_scene(sources, series):
    again = scenes.scene(sources, 7, 3)
    assert np.array_equal(again.image, series[3].image)
    assert again.faces == series[3].faces
    assert not np.array_equal(scenes.scene(sources, 8, 3).image[:50, :50], again.image[:50, :50])


def test_scenes_stay_within_the_promised_ranges(series):
    counts = [len(s.faces) for s in series]
    assert min(counts) == 0 and max(counts) == scenes.MAX_FACES
    for s in series:
        h, w = s.image.shape[:2]
        assert s.image.dtype == np.uint8 and s.image.ndim == 3
        assert scenes.SCENE_WIDTH[0] <= w <= scenes.SCENE_WIDTH[1]
        assert scenes.SCENE_HEIGHT[0] <= h <= scenes.SCENE_HEIGHT[1]
        for f in s.faces:
            x1, y1, x2, y2 = f.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert scenes.FACE_WIDTH[0] - 1e-6 <= x2 - x1 <= scenes.FACE_WIDTH[1] + 1e-6
            assert abs(f.angle) <= scenes.MAX_ANGLE
        for a in s.faces:  # pasted faces never overlap
            for b in s.faces:
                assert a is b or not scenes._overlap(a.box, b.box)


def test_true_eyes_follow_the_rotation_and_scale(sources, series):
    src = sources[0]
    src_tilt = eye_tilt(src.eyes)
    src_ratio = math.dist(*src.eyes) / (src.box[2] - src.box[0])
    placed = [f for s in series for f in s.faces]
    assert len(placed) >= 10
    for f in placed:
        assert eye_tilt(f.eyes) == pytest.approx(f.angle + src_tilt, abs=0.05)
        assert math.dist(*f.eyes) / (f.box[2] - f.box[0]) == pytest.approx(src_ratio, rel=0.01)
        # the eyes sit where they sat in the source box, turned about its centre
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        mid = np.mean(f.eyes, axis=0)
        assert math.dist(mid, (cx, cy)) == pytest.approx(
            math.dist(np.mean(src.eyes, axis=0), ((src.box[0] + src.box[2]) / 2,
                                                   (src.box[1] + src.box[3]) / 2))
            * (f.box[2] - f.box[0]) / (src.box[2] - src.box[0]), rel=0.02)


def test_the_face_is_pasted_where_the_truth_says(sources):
    """Upright and unrotated, the scene's pixels inside the true box are the source's, scaled."""
    rng = np.random.default_rng(0)
    src = sources[0]
    s = scenes.compose(sources, rng, num_faces=1)
    f = s.faces[0]
    x1, y1, x2, y2 = (round(v) for v in f.box)
    # compare the central half of the box, away from the feathered edge
    qx, qy = (x2 - x1) // 4, (y2 - y1) // 4
    got = Image.fromarray(s.image[y1 + qy:y2 - qy, x1 + qx:x2 - qx]).rotate(-f.angle)
    want = Image.fromarray(src.image).crop(tuple(round(v) for v in src.box)).resize(
        (x2 - x1, y2 - y1), Image.LANCZOS).crop((qx, qy, x2 - x1 - qx, y2 - y1 - qy))
    g = np.asarray(got.convert("L"), np.float64)[4:-4, 4:-4]
    w = np.asarray(want.convert("L"), np.float64)[4:-4, 4:-4]
    assert np.corrcoef(g.ravel(), w.ravel())[0, 1] > 0.5


def test_write_and_cli(tmp_path, sources):
    truth = scenes.read_truth(scenes.write(sources, str(tmp_path / "lib"), 3, seed=2))
    assert [t["file"] for t in truth] == [f"scenes/scene_{i:05d}.jpg" for i in range(3)]
    cli = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "preprocessing.scenes", f"--output_dir={cli}",
                    "--num_scenes=3", "--seed=2"], cwd=REPO, check=True, capture_output=True)
    assert scenes.read_truth(str(cli / scenes.TRUTH_FILE)) == truth
    for t in truth:
        with Image.open(cli / t["file"]) as im:
            assert im.size == (t["width"], t["height"])
        for f in t["faces"]:
            assert set(f) == {"box", "eyes", "angle", "age", "source"}
    first = truth[0]["file"]
    assert (cli / first).read_bytes() == (tmp_path / "lib" / first).read_bytes()
    # --paste reaches the scenes: the same draws and truth, other pixels where a face is.
    rect = tmp_path / "rect"
    subprocess.run([sys.executable, "-m", "preprocessing.scenes", f"--output_dir={rect}",
                    "--num_scenes=3", "--seed=2", "--paste=rectangle"], cwd=REPO, check=True,
                   capture_output=True)
    assert scenes.read_truth(str(rect / scenes.TRUTH_FILE)) == truth
    with_face = next(t["file"] for t in truth if t["faces"])
    assert (rect / with_face).read_bytes() != (cli / with_face).read_bytes()


def test_labelled_crops_read_ages_and_name_bad_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (200, 200, 3), np.uint8)).save(images / f"{i}.jpg")
    (tmp_path / "labels.csv").write_text(
        "file_name,real_age\n" + "".join(f"{i}.jpg,{20 + i}\n" for i in range(5)))
    crops = scenes.labelled_crops(str(images), str(tmp_path / "labels.csv"), limit=3, seed=1)
    assert len(crops) == 3 and all(c.age in {20, 21, 22, 23, 24} for c in crops)
    assert crops[0].box == scenes.ALIGNED_CROP_BOX
    Image.fromarray(rng.integers(0, 255, (100, 300, 3), np.uint8)).save(images / "wide.jpg")
    with pytest.raises(ValueError, match="wide.jpg.*not a square"):
        scenes.aligned_crop_source(str(images / "wide.jpg"), 30)
    with pytest.raises(ValueError, match="no face sources"):
        scenes.scene([], 0, 0)


def test_a_rectangle_paste_keeps_the_whole_crop():
    """The ellipse drops a crop's corners (and on a tight crop the top of the head); the
    rectangle keeps them: a colour only in the source's corners reaches the scene."""
    src = scenes.FaceSource(np.full((200, 200, 3), 128, np.uint8), (16.0, 0.0, 179.0, 192.0),
                            ((60.5, 58.0), (137.0, 58.0)), 30.0, "marked.png")
    for corner in (np.s_[:20, :20], np.s_[:20, -20:], np.s_[-20:, :20], np.s_[-20:, -20:]):
        src.image[corner] = (255, 0, 255)  # magenta: no background draws it exactly

    def magenta_pixels(paste):
        s = scenes.compose([src], np.random.default_rng(5), num_faces=1, max_angle=0.0,
                           paste=paste)
        rgb = s.image.astype(int)
        return int(np.sum((rgb[..., 0] > 230) & (rgb[..., 1] < 40) & (rgb[..., 2] > 230)))

    assert magenta_pixels("ellipse") == 0
    assert magenta_pixels("rectangle") > 100
    with pytest.raises(ValueError, match="paste='square'"):
        scenes.compose([src], np.random.default_rng(5), num_faces=1, paste="square")
