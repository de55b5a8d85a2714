"""preprocessing.run --face=detect|align: the face stage, its flags, records, dead letters and
stats.json, on the public-domain astronaut pasted into scenes (preprocessing.scenes)."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contract import reasons, schema
from contract import stats as stats_file
from contract.framing import Framing
from imaging import faces, images
from preprocessing import face_stage, options, scenes
from preprocessing import run as run_module

pytest.importorskip("skimage")
REPO = Path(__file__).resolve().parents[1]
SIZE = 64
ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("mtcnn")
    return faces.detector()


def _jpeg(rgb, orientation=None) -> bytes:
    out = io.BytesIO()
    image = Image.fromarray(rgb)
    if orientation is None:
        image.save(out, "JPEG", quality=95)
    else:  # stored sideways; the EXIF tag turns it upright (6: the viewer rotates 90 clockwise)
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        image.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=95,
                                                        exif=exif.tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def scene_set(detector):
    """{count: [scenes]}: astronaut scenes with 0, 1 and 2 faces in which the detector finds
    exactly the faces the truth holds (each matched at IoU >= 0.5), so the job's outcome per
    scene is known; seeds are fixed, so the set is too."""
    src = [scenes.astronaut()]
    found = {0: [], 1: [], 2: []}
    for i in range(60):
        count = i % 3
        if len(found[count]) >= 2:
            continue
        s = scenes.compose(src, np.random.default_rng([21, i]), num_faces=count)
        got = faces.detect(s.image, detector)
        if len(s.faces) == count and len(got) == count and all(
                max(faces.iou(g.box, t.box) for t in s.faces) >= 0.5 for g in got):
            found[count].append(s)
        if all(len(v) >= 2 for v in found.values()):
            return found
    raise AssertionError(f"too few usable scenes: { {k: len(v) for k, v in found.items()} }")


# ---- flags


def _argv(tmp_path, *flags):
    images_dir = tmp_path / "images"
    images_dir.mkdir(exist_ok=True)
    (images_dir / "a.jpg").write_bytes(b"x")
    labels = tmp_path / "labels.csv"
    labels.write_text("file_name,real_age\na.jpg,30\n")
    return [f"--labels={labels}", f"--images={images_dir}", f"--output_dir={tmp_path / 'out'}",
            *flags]


@pytest.mark.parametrize("flags, message", [
    (["--face=crop"], "--face=crop: expected one of none, detect, align"),
    (["--face=detect", "--multi_face=all"], "--multi_face=all: expected one of largest, reject"),
    (["--multi_face=reject"], "--multi_face=reject: only used with --face=detect"),
])
def test_bad_face_flags_are_named(tmp_path, flags, message):
    with pytest.raises(options.OptionsError, match=message):
        options.parse(_argv(tmp_path, *flags))


def test_face_flags_reach_the_config(tmp_path):
    config, _ = options.parse(_argv(tmp_path))
    assert (config.face, config.multi_face) == ("none", "largest")
    config, _ = options.parse(_argv(tmp_path, "--face=align", "--multi_face=reject"))
    assert (config.face, config.multi_face) == ("align", "reject")
    assert isinstance(face_stage.framer(config), face_stage.FaceFramer)


DATAFLOW = ["--runner=DataflowRunner", "--project=my-proj", "--region=us-central1",
            "--temp_location=gs://my-bucket/tmp", "--setup_file=./setup.py"]


def test_dataflow_with_faces_needs_the_detector_on_the_workers(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    def check(*flags, face="detect"):
        options.validate_pipeline_options(PipelineOptions([*DATAFLOW, *flags]), {}, REPO, face)

    check(face="none")
    with pytest.raises(options.OptionsError, match="--face=detect on Dataflow.*"
                       f"--requirements_file={options.FACES_REQUIREMENTS}"):
        check()
    check(f"--requirements_file={options.FACES_REQUIREMENTS}")
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "reqs.txt").write_text("# only Pillow\npillow>=10\ntensorflow-cpu==2.21\n")
    with pytest.raises(options.OptionsError, match=r"reqs.txt lacks \['mtcnn'\]"):
        options.validate_pipeline_options(
            PipelineOptions([*DATAFLOW, "--requirements_file=reqs.txt"]), {}, tmp_path, "align")


# ---- schema and stats.json


def _face():
    return faces.Face((10.5, 20.25, 110.0, 140.0),
                      ((40.0, 60.0), (80.0, 61.0), (60.0, 80.0), (45.0, 100.0), (75.0, 101.0)),
                      0.9987)


def _record(face=None):
    image = images.ProcessedImage(b"jpeg", SIZE, SIZE, 480, 640, 12.5, 0.4)
    from preprocessing import records

    return records.face_record("a.jpg", 31.0, {}, image, b"photo bytes", face)


def test_face_fields_round_trip_and_plain_records_do_not_change():
    plain = schema.encode(_record())
    assert b"face/" not in plain
    assert schema.encode(_record(None)) == plain
    with_face = schema.encode(_record(_face()))
    parsed = schema.parse(tf.constant(with_face), faces=True)
    np.testing.assert_allclose(parsed[schema.FACE_BOX].numpy(), _face().box)
    np.testing.assert_allclose(parsed[schema.FACE_LANDMARKS].numpy(), _face().landmarks)
    assert parsed[schema.FACE_SCORE].numpy() == pytest.approx(0.9987)
    # The reader without faces reads both; the plain record has no face to give.
    assert schema.parse(tf.constant(with_face))[schema.AGE].numpy() == 31.0
    with pytest.raises(tf.errors.InvalidArgumentError, match="face/"):
        schema.parse(tf.constant(plain), faces=True)
    broken = {k: v for k, v in _record(_face()).items() if k != schema.FACE_SCORE}
    with pytest.raises(KeyError, match="face/score"):
        schema.encode(broken)


def test_stats_json_faces_load_and_old_files_still_do():
    old = {"splits": {"train": {"count": 3}}}
    assert stats_file.Stats.from_dict(old).faces is None
    entry = {"mode": "align", "multi_face": "largest", "no_face": 2, "multi_face_kept": 1,
             "multi_face_rejected": 0}
    loaded = stats_file.Stats.from_dict({**old, "faces": entry})
    assert loaded.faces == stats_file.FaceStats(**entry)
    assert stats_file.Stats.from_json(loaded.to_json(), "x").faces == loaded.faces
    with pytest.raises(ValueError, match="'faces.mode' is 'none'"):
        stats_file.Stats.from_dict({**old, "faces": {**entry, "mode": "none"}})
    with pytest.raises(ValueError, match="'faces.no_face' must be a int >= 0"):
        stats_file.Stats.from_dict({**old, "faces": {**entry, "no_face": -1}})


# ---- the face stage on real faces (the detector runs)


def _framer(mode, policy="largest", margin=0.0):
    return face_stage.FaceFramer(images.ImageConfig(Framing(SIZE, margin=margin)), mode, policy)


def test_no_face_and_several_faces_under_reject_are_image_errors(detector, scene_set):
    framer = _framer("detect", "reject")
    framer.detector = detector
    with pytest.raises(images.ImageError) as info:
        framer.frame(_jpeg(scene_set[0][0].image))
    assert info.value.reason == reasons.NO_FACE
    with pytest.raises(images.ImageError) as info:
        framer.frame(_jpeg(scene_set[2][0].image))
    assert info.value.reason == reasons.MULTI_FACE and "2 faces" in info.value.detail


@pytest.mark.parametrize("mode", ["detect", "align"])
def test_largest_face_is_framed_with_its_box_in_the_upright_photo(detector, scene_set, mode):
    scene = scene_set[2][0]
    largest = max(scene.faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    framer = _framer(mode)
    framer.detector = detector
    for orientation in (None, 6):  # 6: stored sideways, EXIF turns it upright
        image, face, found = framer.frame(_jpeg(scene.image, orientation))
        assert found == 2
        assert faces.iou(face.box, largest.box) > 0.5
        assert (image.original_width, image.original_height) == scene.image.shape[1::-1]
        decoded = np.asarray(Image.open(io.BytesIO(image.jpeg)))
        assert decoded.shape == (SIZE, SIZE, 3)
    if mode == "align":  # the eyes landed level, where the template puts them
        matrix = faces.alignment_matrix(face, SIZE)
        left, right = faces.transform_points(matrix, largest.eyes)
        assert abs(left[1] - right[1]) < 0.06 * SIZE
        assert abs((left[1] + right[1]) / 2 - faces.EYE_LINE_Y * SIZE) < 0.08 * SIZE


# ---- the Beam job (DirectRunner)


def _write_inputs(tmp_path, scene_set):
    """The scenes as JPEGs (one stored sideways with an EXIF tag) and their labels."""
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    rows, truth = [], {}
    for count, group in scene_set.items():
        for i, s in enumerate(group):
            name = f"faces{count}_{i}.jpg"
            (images_dir / name).write_bytes(_jpeg(s.image, 6 if (count, i) == (1, 0) else None))
            rows.append(f"{name},{20 + 10 * count + i}")
            truth[name] = s
    labels = tmp_path / "labels.csv"
    labels.write_text("file_name,real_age\n" + "\n".join(rows) + "\n")
    return labels, images_dir, truth


def _run(labels, images_dir, out, *flags):
    return run_module.run([f"--labels={labels}", f"--images={images_dir}", f"--output_dir={out}",
                           f"--image_size={SIZE}", "--runner=DirectRunner", "--num_shards=1",
                           *flags])


def _read_records(out, faces_present):
    paths = sorted(str(p) for p in Path(out).glob("*-of-*"))
    return [{k: v.numpy() for k, v in schema.parse(tf.constant(r.numpy()),
                                                   faces=faces_present).items()}
            for r in tf.data.TFRecordDataset(paths)]


def _dead_letters(out):
    with open(os.path.join(out, schema.ERRORS_DIR, "errors.jsonl")) as f:
        return {r["file_name"]: r["reason"]
                for r in map(json.loads, f) if r}


@pytest.mark.slow
def test_detect_with_reject_on_two_workers(tmp_path, scene_set):
    labels, images_dir, truth = _write_inputs(tmp_path, scene_set)
    out = tmp_path / "out"
    stats = _run(labels, images_dir, out, "--face=detect", "--multi_face=reject",
                 "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert _dead_letters(out) == {"faces0_0.jpg": reasons.NO_FACE,
                                  "faces0_1.jpg": reasons.NO_FACE,
                                  "faces2_0.jpg": reasons.MULTI_FACE,
                                  "faces2_1.jpg": reasons.MULTI_FACE}
    records = _read_records(out, True)
    assert sorted(r[schema.FILENAME].decode() for r in records) == ["faces1_0.jpg",
                                                                   "faces1_1.jpg"]
    for r in records:
        scene = truth[r[schema.FILENAME].decode()]
        assert faces.iou(tuple(r[schema.FACE_BOX]), scene.faces[0].box) > 0.5
        eyes = r[schema.FACE_LANDMARKS][:2]
        assert np.abs(eyes - np.asarray(scene.faces[0].eyes)).max() < 0.1 * (
            scene.faces[0].box[2] - scene.faces[0].box[0])
        assert 0.8 < r[schema.FACE_SCORE] <= 1.0
        assert (r[schema.ORIGINAL_WIDTH], r[schema.ORIGINAL_HEIGHT]) == scene.image.shape[1::-1]
    faces_stats = stats_file.Stats.from_dict(stats).faces
    assert faces_stats == stats_file.FaceStats("detect", "reject", no_face=2, multi_face_kept=0,
                                               multi_face_rejected=2)
    assert stats["inputs"] == len(records) + sum(stats["rejects"].values()) == 6
    features = json.loads((out / "features.json").read_text())
    assert set(features["featuresDict"]["features"]["face"]["featuresDict"]["features"]) == {
        "box", "landmarks", "score"}


@pytest.mark.slow
def test_align_with_largest_keeps_multi_face_photos_and_none_is_unchanged(tmp_path, scene_set):
    labels, images_dir, _ = _write_inputs(tmp_path, scene_set)
    stats = _run(labels, images_dir, tmp_path / "align", "--face=align")
    assert _dead_letters(tmp_path / "align") == {"faces0_0.jpg": reasons.NO_FACE,
                                                 "faces0_1.jpg": reasons.NO_FACE}
    assert stats["faces"] == {"mode": "align", "multi_face": "largest", "no_face": 2,
                              "multi_face_kept": 2, "multi_face_rejected": 0}
    assert len(_read_records(tmp_path / "align", True)) == 4
    # TFDS reads the face features from the metadata the job wrote.
    import tensorflow_datasets as tfds

    split = next(name for name, s in stats["splits"].items() if s["count"])
    element = next(iter(tfds.builder_from_directory(str(tmp_path / "align")).as_dataset(split)))
    assert element["face"]["landmarks"].shape == (5, 2) and element["face"]["score"] > 0.8
    assert stats["inputs"] == 4 + sum(stats["rejects"].values())
    # --face=none: every photo is a record, no face keys, the same bytes as without the flag.
    plain = _run(labels, images_dir, tmp_path / "none", "--face=none")
    _run(labels, images_dir, tmp_path / "default")
    assert plain["faces"] is None and plain["rejects"] == {}
    for shard in Path(tmp_path / "none").glob("*-of-*"):
        data = shard.read_bytes()
        assert b"face/" not in data
        assert data == (tmp_path / "default" / shard.name).read_bytes()
    assert len(_read_records(tmp_path / "none", False)) == 6
