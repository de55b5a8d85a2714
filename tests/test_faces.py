"""Tests of face detection and alignment (imaging.faces, imaging.face_detector) on
the public-domain astronaut portrait, alone and pasted into scenes."""

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging import faces
from preprocessing import scenes

pytest.importorskip("skimage")
REPO = Path(__file__).resolve().parents[1]
# The portrait's landmarks, checked by eye (eyes: pupils; mouth: corners).
ASTRONAUT_MARKS = ((204.0, 100.0), (245.0, 102.0), (224.0, 126.0), (202.0, 139.0), (244.0, 140.0))


def astronaut_face(matrix=None):
    marks = np.asarray(ASTRONAUT_MARKS)
    src = scenes.astronaut()
    box = np.asarray(src.box).reshape(2, 2)
    if matrix is not None:
        marks, box = faces.transform_points(matrix, marks), faces.transform_points(matrix, box)
    return faces.Face(tuple(box.ravel()), tuple(map(tuple, marks)), 1.0)


def rotation(degrees, centre):
    """3x3 map turning an image counter-clockwise as seen about centre (what PIL's rotate does)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    m = np.eye(3)
    m[:2, :2] = [[c, s], [-s, c]]
    m[:2, 2] = np.asarray(centre) - m[:2, :2] @ np.asarray(centre)
    return m


# ---- pure parts: no detector


def test_align_undoes_a_rotation():
    image = scenes.astronaut().image
    upright = faces.align(image, astronaut_face(), 128)
    for degrees in (-30, -12, 25):
        turned = np.asarray(Image.fromarray(image).rotate(degrees, resample=Image.BICUBIC))
        face = astronaut_face(rotation(degrees, (256, 256)))
        assert face.tilt() == pytest.approx(astronaut_face().tilt() + degrees, abs=1e-6)
        crop = faces.align(turned, face, 128)
        # the face region of both crops holds the same pixels (edges differ: rotated-in black)
        diff = np.abs(crop[24:104, 24:104].astype(float) - upright[24:104, 24:104]).mean()
        assert diff < 6, degrees


def test_alignment_puts_the_eyes_on_the_template():
    face = astronaut_face(rotation(20, (256, 256)))
    for measure in faces.MEASURES:
        m = faces.alignment_matrix(face, 200, measure)
        left, right = faces.transform_points(m, [face.point("left_eye"), face.point("right_eye")])
        assert left[1] == pytest.approx(right[1], abs=1e-9)  # level
        assert (left + right)[0] / 2 == pytest.approx(100)
        assert left[1] == pytest.approx(faces.EYE_LINE_Y * 200)
    m = faces.alignment_matrix(face, 200, "eye_mouth")
    eyes, mouth = faces.transform_points(m, [
        (face.point("left_eye") + face.point("right_eye")) / 2,
        (face.point("mouth_left") + face.point("mouth_right")) / 2])
    assert np.linalg.norm(mouth - eyes) == pytest.approx(faces.EYE_TO_MOUTH * 200)
    with pytest.raises(ValueError, match="measure='nose'"):
        faces.alignment_matrix(face, 200, "nose")
    with pytest.raises(ValueError, match="size=0"):
        faces.alignment_matrix(face, 0)


def test_choose_and_iou():
    small = faces.Face((0, 0, 10, 10), ((0, 0),) * 5, 0.99)
    big = faces.Face((20, 20, 60, 60), ((0, 0),) * 5, 0.9)
    assert faces.choose([], "largest") is None
    assert faces.choose([small, big], "largest") is big
    assert faces.choose([small], "reject") is small
    with pytest.raises(faces.MultipleFaces, match="2 faces"):
        faces.choose([small, big], "reject")
    with pytest.raises(ValueError, match="multi_face='all'"):
        faces.choose([small], "all")
    assert faces.iou(small.box, small.box) == 1.0
    assert faces.iou(small.box, big.box) == 0.0
    assert faces.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_importing_faces_does_not_load_tensorflow():
    code = ("import sys, imaging.faces, preprocessing.scenes; "
            "assert 'tensorflow' not in sys.modules and 'mtcnn' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# ---- the detector


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("mtcnn")
    return faces.detector()


def test_finds_the_astronaut_and_her_landmarks(detector):
    found = faces.detect(scenes.astronaut().image, detector)
    assert len(found) == 1
    face = found[0]
    assert face.score > 0.99
    assert faces.iou(face.box, scenes.astronaut().box) > 0.8
    for got, want in zip(face.landmarks, ASTRONAUT_MARKS, strict=True):
        assert math.dist(got, want) < 5


def test_detect_rejects_what_is_not_an_rgb_photo(detector):
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\].*float64"):
        faces.detect(np.zeros((20, 20, 3)), detector)
    with pytest.raises(ValueError, match=r"\[20, 20\]"):
        faces.detect(np.zeros((20, 20), np.uint8), detector)


def test_blank_and_busy_backgrounds_hold_no_face(detector):
    assert faces.detect(np.full((300, 400, 3), 128, np.uint8), detector) == []
    empty = [s for s in (scenes.scene([scenes.astronaut()], 11, i) for i in range(12))
             if not s.faces]
    assert empty
    false_positives = sum(len(faces.detect(s.image, detector)) for s in empty)
    assert false_positives <= len(empty) // 4


def test_refining_stages_never_run_a_network_on_an_empty_batch():
    """oneDNN's convolution on AVX-512 CPUs returns its input unchanged for an empty batch, so
    the refining stages must not hand a network zero patches when a photo leaves no box."""
    import tensorflow as tf

    from imaging import face_detector

    seen = []

    def net(patches):
        seen.append(int(patches.shape[0]))
        return tf.reduce_mean(patches, [1, 2]), tf.reduce_max(patches, [1, 2, 3])[:, None]

    image = tf.zeros([1, 48, 48, 3])
    offsets, prob = face_detector._on_patches(net, image, tf.zeros([0, 4]), 24, 48)
    assert seen == [1] and offsets.shape == (0, 3) and prob.shape == (0, 1)
    boxes = tf.constant([[0.0, 0.0, 24.0, 24.0], [10.0, 10.0, 40.0, 40.0]])
    offsets, _ = face_detector._on_patches(net, image, boxes, 24, 48)
    assert seen == [1, 3] and offsets.shape == (2, 3)


@pytest.fixture(scope="module")
def scene_results(detector):
    """Ten scenes of 1-3 rotated, scaled astronauts, and what the detector found in each."""
    src = [scenes.astronaut()]
    out = []
    for i in range(10):
        s = scenes.compose(src, np.random.default_rng([3, i]), num_faces=1 + i % 3)
        out.append((s, faces.detect(s.image, detector)))
    return out


def test_recall_and_box_overlap_in_scenes(scene_results):
    truth = [f for s, _ in scene_results for f in s.faces]
    matched, false_pos = 0, 0
    for s, found in scene_results:
        for f in found:
            best = max((faces.iou(f.box, t.box) for t in s.faces), default=0.0)
            matched += best >= 0.5
            false_pos += best < 0.5
    assert len(truth) >= 15
    assert matched / len(truth) >= 0.9
    assert false_pos <= 1


def test_alignment_levels_the_true_eyes_in_scenes(scene_results):
    residual, before = [], []
    for s, found in scene_results:
        for t in s.faces:
            f = max(found, key=lambda f: faces.iou(f.box, t.box), default=None)
            if f is None or faces.iou(f.box, t.box) < 0.5:
                continue
            left, right = faces.transform_points(faces.alignment_matrix(f, 224), t.eyes)
            residual.append(abs(math.degrees(math.atan2(right[1] - left[1],
                                                        right[0] - left[0]))))
            before.append(abs(t.angle))
    assert np.median(before) > 8  # the scenes did tilt the faces
    assert np.median(residual) < 3 and max(residual) < 8


@pytest.mark.slow
def test_detector_runs_from_a_savedmodel_on_photo_bytes(tmp_path, detector):
    """The whole detector is a graph: saved, then loaded and run in a process where the mtcnn
    package cannot be imported, on PNG bytes, it finds the faces the eager detector finds."""
    import tensorflow as tf

    s = scenes.compose([scenes.astronaut()], np.random.default_rng(9), num_faces=2)
    png = io.BytesIO()
    Image.fromarray(s.image).save(png, format="PNG")
    (tmp_path / "scene.png").write_bytes(png.getvalue())
    tf.saved_model.save(detector, str(tmp_path / "det"),
                        signatures={"detect_bytes": detector.detect_bytes})
    code = f"""
import sys, json
sys.modules["mtcnn"] = None  # the SavedModel must not need the package
import tensorflow as tf
fn = tf.saved_model.load({str(tmp_path / "det")!r}).signatures["detect_bytes"]
out = fn(data=tf.constant(open({str(tmp_path / "scene.png")!r}, "rb").read()))
print(json.dumps({{k: v.numpy().tolist() for k, v in out.items()}}))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True,
                         text=True)
    import json

    served = faces.from_outputs(json.loads(run.stdout.strip().splitlines()[-1]))
    eager = faces.detect(s.image, detector)
    assert len(served) == len(eager) == 2
    for a, b in zip(served, eager, strict=True):
        assert faces.iou(a.box, b.box) > 0.98
        assert np.allclose(a.landmarks, b.landmarks, atol=0.5)
