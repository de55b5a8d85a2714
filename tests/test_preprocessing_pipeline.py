"""The pipeline's composite transforms, each on a handful of elements (TestPipeline style)."""

import io
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # not collected
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from contract import reasons, schema
from contract.framing import Framing
from imaging import images
from preprocessing import (
    dedup,
    fragments,
    inputs,
    label_stage,
    labels,
    packing,
    pipeline,
    tfrecord_writer,
)
from preprocessing import plan as shard_plan


def _row(name, age, source=None, **extra):
    return labels.LabelRow(name, float(age), source or f"l.csv:{name}", extra)


def _claim(name, age, **extra):
    return dedup.Claim(name, _row(name, age, **extra).label_key(), float(age), "/img/" + name)


def _png(path, color=(10, 200, 30), size=(30, 20)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def _packed(p, rows, spill_dir=None):
    """Rows made here -> the packed form ReadLabels gives LoadImages."""
    return (p | beam.Create(rows) | beam.Map(label_stage.row_key)
            | packing.Pack(spill_dir))


def _claims(packed):
    """LoadImages' packed claims -> (id, claim fields), one per claim."""
    return (packed | "GroupClaims" >> beam.GroupByKey()
            | "UnpackClaims" >> beam.FlatMap(packing.unpack_bucket)
            | "OnePerClaim" >> beam.FlatMap(lambda kv: [(kv[0], f) for f in kv[1]]))


def _plan(p, **num_shards):
    return p | "Plan" >> beam.Create([{"train": 1, "validation": 1, "test": 1, **num_shards}])


def test_load_images_rejects_every_row_of_a_repeated_file_name_unread(tmp_path):
    _png(tmp_path / "b.png")
    _png(tmp_path / "a.png")  # readable, but labelled twice: neither row can be trusted
    rows = [_row("a.png", 3, "l:2"), _row("b.png", 4, "l:3"), _row("a.png", 3, "l:4")]
    with BeamTestPipeline() as p:
        keyed, _, rejects = _packed(p, rows) | pipeline.LoadImages(
            str(tmp_path), images.ImageConfig(Framing(image_size=8)), _plan(p),
            str(tmp_path / "fragments"))
        assert_that(keyed | beam.FlatMap(lambda kv: [e.file_name for e, _ in
                                                     fragments.read(kv[1])]),
                    equal_to(["b.png"]), label="kept")
        assert_that(rejects | beam.Map(lambda r: (r["input"], r["reason"])),
                    equal_to([("l:2", reasons.DUPLICATE_FILE_NAME),
                              ("l:4", reasons.DUPLICATE_FILE_NAME)]), label="rejects")


def test_load_images_spills_through_files_like_in_memory(tmp_path):
    """With a spill folder (the local runners) the rows reach the loader through files, with
    the same result as through the shuffle itself (Dataflow)."""
    for i in range(6):
        _png(tmp_path / f"{i}.png", color=(i * 40, 0, 0))
    rows = [_row(f"{i}.png", 20 + i) for i in range(6)]
    for spill in (None, str(tmp_path / "spill")):
        with BeamTestPipeline() as p:
            keyed, claims, _ = _packed(p, rows, spill) | pipeline.LoadImages(
                str(tmp_path), images.ImageConfig(Framing(image_size=8)), _plan(p),
                str(tmp_path / f"fragments_{spill is None}"), spill_dir=spill)
            assert_that(keyed | beam.FlatMap(lambda kv: [e.file_name for e, _ in
                                                         fragments.read(kv[1])]),
                        equal_to([f"{i}.png" for i in range(6)]), label="kept")
            assert_that(_claims(claims) | beam.Map(lambda kv: dedup.Claim(*kv[1]).age),
                        equal_to([20.0 + i for i in range(6)]), label="claims")
    assert list((tmp_path / "spill").glob("*.pairs"))  # the rows did go through files


def test_resolve_duplicates_keeps_identical_labels_once_and_rejects_conflicts():
    claims = [("h1", _claim("a.jpg", 30, gender="1")), ("h1", _claim("a_copy.jpg", 30, gender="1")),
              ("h2", _claim("b.jpg", 40)), ("h2", _claim("b_copy.jpg", 41)),
              ("h3", _claim("c.jpg", 50))]
    with BeamTestPipeline() as p:
        verdicts, rejects, merged = (p | beam.Create(claims) | packing.Pack()
                                     | pipeline.ResolveDuplicates())
        # Only ids claimed more than once get a verdict: keep a.jpg, keep nothing of h2.
        assert_that(verdicts, equal_to([("h1", "a.jpg"), ("h2", None)]), label="verdicts")
        assert_that(rejects | beam.Map(lambda r: (r["file_name"], r["reason"])),
                    equal_to([("b.jpg", reasons.DUPLICATE_CONFLICT),
                              ("b_copy.jpg", reasons.DUPLICATE_CONFLICT)]), label="rejects")
        assert_that(merged, equal_to([1]), label="merged")


def _fields(keyed_part):
    """(shard key, Part) -> (split, n, name, width, age matches) for each record in the Part."""
    (split_name, shard, n), part = keyed_part
    assert 0 <= shard < n
    out = []
    for entry, frame in fragments.read(part):
        feature = tf.train.Example.FromString(frame[12:-4]).features.feature  # strip framing
        assert feature[schema.ID].bytes_list.value[0].decode() == entry.record_id
        out.append((split_name, n, entry.file_name, feature[schema.WIDTH].int64_list.value[0],
                    feature[schema.AGE].float_list.value[0] == entry.age))
    return out


def test_load_images_spills_each_encoded_record_under_its_planned_shard(tmp_path):
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    _png(images_dir / "good.png")
    (images_dir / "empty.png").write_bytes(b"")
    rows = [_row("good.png", 5), _row("empty.png", 6), _row("missing.png", 7)]
    config = images.ImageConfig(Framing(image_size=8))
    with BeamTestPipeline() as p:
        shards_per_split = _plan(p, train=3, validation=3, test=3)
        keyed, claims, rejects = (_packed(p, rows) | pipeline.LoadImages(
            str(images_dir), config, shards_per_split, str(tmp_path / "fragments")))
        assert_that(keyed | beam.FlatMap(lambda kv: [f[1:] for f in _fields(kv)]),
                    equal_to([(3, "good.png", 8, True)]), label="records")
        assert_that(_claims(claims) | beam.Map(lambda kv: (len(kv[0]),
                                                           dedup.Claim(*kv[1]).file_name,
                                                 dedup.Claim(*kv[1]).age)),
                    equal_to([(32, "good.png", 5.0)]), label="claims")
        assert_that(rejects | beam.Map(lambda r: (r["file_name"], r["reason"])),
                    equal_to([("empty.png", reasons.EMPTY_FILE),
                              ("missing.png", reasons.MISSING_FILE)]), label="rejects")


def test_load_images_splits_by_group_and_rejects_rows_without_one(tmp_path):
    rows = []
    for i in range(10):
        _png(tmp_path / f"{i}.png", color=(i * 20, 0, 0))
        rows.append(_row(f"{i}.png", 20, person=f"p{i % 2}"))
    rows.append(_row("nobody.png", 20, person=""))  # no file: rejected before it is read
    with BeamTestPipeline() as p:
        keyed, _, rejects = (_packed(p, rows) | pipeline.LoadImages(
            str(tmp_path), images.ImageConfig(Framing(image_size=8)), _plan(p),
            str(tmp_path / "fragments"), ratios=(0.5, 0.25, 0.25), group_by="person"))
        groups = (keyed | beam.FlatMap(lambda kv: [(int(e.file_name[0]) % 2, kv[0][0])
                                                   for e, _ in fragments.read(kv[1])])
                  | beam.Distinct() | beam.combiners.Count.PerKey())
        assert_that(groups, equal_to([(0, 1), (1, 1)]), label="one split per person")
        assert_that(rejects | beam.Map(lambda r: (r["file_name"], r["reason"])),
                    equal_to([("nobody.png", reasons.BAD_ROW)]), label="rejects")


def test_read_labels_packs_rows_counts_splits_and_rejects_bad_rows(tmp_path):
    lines = ["file_name,real_age"] + [f"{i}.jpg,20" for i in range(40)] + ["old.jpg,abc"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    with BeamTestPipeline() as p:
        rows, expected, rejects = p | label_stage.ReadLabels(
            "csv", str(tmp_path / "labels.csv"), str(tmp_path), 120.0, (0.8, 0.1, 0.1))
        names = (rows | beam.GroupByKey() | beam.FlatMap(packing.unpack_bucket)
                 | beam.Map(lambda kv: (kv[0], labels.LabelRow(*kv[1][0]).age)))
        assert_that(names, equal_to([(f"{i}.jpg", 20.0) for i in range(40)]), label="rows")
        assert_that(expected | beam.Map(lambda c: {k: round(v, 6) for k, v in c.items()}),
                    equal_to([{"train": 32.0, "validation": 4.0, "test": 4.0}]), label="counts")
        assert_that(rejects | beam.Map(lambda r: (r["file_name"], r["reason"])),
                    equal_to([("old.jpg", reasons.BAD_AGE)]), label="rejects")


def test_plan_shards_from_expected_counts_of_every_label_source():
    per_source = [{"train": 16.0, "validation": 2.0, "test": 2.0}] * 2
    with BeamTestPipeline() as p:
        counts = p | beam.Create(per_source) | shard_plan.PlanShards(2, 64)
        # 32 / 4 / 4 expected records: two shards each, as asked.
        assert_that(counts, equal_to([{"train": 2, "validation": 2, "test": 2}]))


def test_write_shards_sorts_by_id_and_drops_what_the_verdicts_do_not_keep(tmp_path):
    key = ("train", 0, 1)
    spills = [fragments.Spill(str(tmp_path / "fragments")) for _ in range(2)]
    for spill, (record_id, name, age) in zip(
            [spills[0], spills[1], spills[0], spills[1], spills[1]],
            [("b", "b.jpg", 2.0), ("a", "a_copy.jpg", 1.0), ("a", "a.jpg", 1.0),
             ("c", "c.jpg", 3.0), ("c", "c_copy.jpg", 4.0)], strict=True):
        record = dict.fromkeys(schema.CORE_KEYS, 0)
        record.update({schema.ID: record_id, schema.FILENAME: name, schema.AGE: age,
                       schema.IMAGE: b"jpeg"})
        frame = tfrecord_writer.tfrecord_frames([schema.encode(record)])
        spill.add(key, fragments.Entry(record_id, name, age, 1.5, len(frame)), frame)
    parts = [kp for spill in spills for kp in spill.flush()]  # two bundles, two fragment files
    with BeamTestPipeline() as p:
        verdicts = p | "Verdicts" >> beam.Create([("a", "a.jpg"), ("c", None)])
        shards, blur = (p | beam.Create(parts)
                        | pipeline.WriteShards(str(tmp_path), 120.0, verdicts))
        assert_that(shards | beam.Map(lambda s: (s["split"], s["count"])),
                    equal_to([("train", 2)]), label="summary")
        assert_that(blur, equal_to([[1.5, 1.5]]), label="blur")
    names = [tf.train.Example.FromString(r.numpy()).features.feature[schema.FILENAME]
             .bytes_list.value[0] for r in tf.data.TFRecordDataset(
                 str(tmp_path / "train-00000-of-00001"))]
    assert names == [b"a.jpg", b"b.jpg"]


def _assert_single_reject(images_dir, name, detail, reason=reasons.UNREADABLE_IMAGE):
    config = images.ImageConfig(Framing(image_size=8))
    with BeamTestPipeline() as p:
        _, _, rejects = _packed(p, [_row(name, 5)]) | pipeline.LoadImages(
            str(images_dir), config, _plan(p), str(images_dir / "fragments"))
        assert_that(rejects | beam.Map(lambda r: (r["file_name"], r["reason"], r["detail"])),
                    equal_to([(name, reason, detail)]))


def test_load_images_dead_letters_a_folder_named_like_an_image(tmp_path):
    (tmp_path / "folder.jpg").mkdir()  # a label naming a folder: one dead letter, job goes on
    _assert_single_reject(tmp_path, "folder.jpg", inputs.NOT_REGULAR, reasons.NOT_A_REGULAR_FILE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_load_images_dead_letters_a_file_it_may_not_read(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"x")
    (tmp_path / "secret.png").chmod(0)
    _assert_single_reject(tmp_path, "secret.png",
                          "cannot read it: PermissionError (Permission denied)")
