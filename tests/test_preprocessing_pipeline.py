"""The pipeline's composite transforms, each on a handful of elements (TestPipeline style)."""

import io
import os

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # not collected
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from preprocessing import images, labels, pipeline, reasons, schema


def _row(name, age, source=None, **extra):
    return labels.LabelRow(name, float(age), source or f"l.csv:{name}", extra)


def _record(name, data, age, **extra):
    return {schema.ID: data, schema.FILENAME: name, schema.AGE: float(age), "extra": extra,
            "split": None, "path": "/img/" + name,
            "label_key": _row(name, age, **extra).label_key()}


def test_reject_duplicate_file_names():
    rows = [_row("a.jpg", 3, "l:2"), _row("b.jpg", 4, "l:3"), _row("a.jpg", 3, "l:4")]
    with BeamTestPipeline() as p:
        kept, rejects = p | beam.Create(rows) | pipeline.RejectDuplicateFileNames()
        assert_that(kept | beam.Map(lambda r: r.file_name), equal_to(["b.jpg"]), label="kept")
        assert_that(rejects | beam.Map(lambda r: (r["input"], r["reason"])),
                    equal_to([("l:2", reasons.DUPLICATE_FILE_NAME),
                              ("l:4", reasons.DUPLICATE_FILE_NAME)]), label="rejects")


def test_drop_exact_duplicates_keeps_identical_labels_once_and_rejects_conflicts():
    records = [_record("a.jpg", "h1", 30, gender="1"), _record("a_copy.jpg", "h1", 30, gender="1"),
               _record("b.jpg", "h2", 40), _record("b_copy.jpg", "h2", 41),
               _record("c.jpg", "h3", 50)]
    with BeamTestPipeline() as p:
        kept, rejects, merged = (p | beam.Create([(r[schema.ID], r) for r in records])
                                 | pipeline.DropExactDuplicates())
        assert_that(kept | beam.Map(lambda r: r[schema.FILENAME]), equal_to(["a.jpg", "c.jpg"]),
                    label="kept")
        assert_that(rejects | beam.Map(lambda r: (r["file_name"], r["reason"])),
                    equal_to([("b.jpg", reasons.DUPLICATE_CONFLICT),
                              ("b_copy.jpg", reasons.DUPLICATE_CONFLICT)]), label="rejects")
        assert_that(merged, equal_to([1]), label="merged")


def test_assign_splits_by_group_and_rejects_rows_without_one():
    records = [_record(f"{i}.jpg", f"h{i}", 20, person=f"p{i % 2}") for i in range(10)]
    records.append(_record("nobody.jpg", "hx", 20, person=""))
    with BeamTestPipeline() as p:
        pairs, rejects = (p | beam.Create(records)
                          | pipeline.AssignSplits((0.5, 0.25, 0.25), group_by="person"))
        groups = (pairs | beam.Map(lambda kv: (kv[1]["extra"]["person"], kv[0]))
                  | beam.Distinct() | beam.combiners.Count.PerKey())
        assert_that(groups, equal_to([("p0", 1), ("p1", 1)]), label="one split per person")
        assert_that(rejects | beam.Map(lambda r: r["reason"]), equal_to([reasons.BAD_ROW]),
                    label="rejects")


def test_load_images_reads_files_and_dead_letters_broken_ones(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 200, 30)).save(buffer, format="PNG")
    (tmp_path / "good.png").write_bytes(buffer.getvalue())
    (tmp_path / "empty.png").write_bytes(b"")
    rows = [_row("good.png", 5), _row("empty.png", 6), _row("missing.png", 7)]
    config = images.ImageConfig(image_size=8)
    with BeamTestPipeline() as p:
        records, rejects = p | beam.Create(rows) | pipeline.LoadImages(str(tmp_path), config)
        assert_that(records | beam.Map(lambda kv: (kv[1][schema.FILENAME], kv[1][schema.WIDTH],
                                                   kv[1][schema.ORIGINAL_WIDTH])),
                    equal_to([("good.png", 8, 30)]), label="records")
        assert_that(rejects | beam.Map(lambda r: (r["file_name"], r["reason"])),
                    equal_to([("empty.png", reasons.EMPTY_FILE),
                              ("missing.png", reasons.MISSING_FILE)]), label="rejects")



def _assert_single_reject(images_dir, name, detail):
    config = images.ImageConfig(image_size=8)
    with BeamTestPipeline() as p:
        _, rejects = p | beam.Create([_row(name, 5)]) | pipeline.LoadImages(str(images_dir),
                                                                             config)
        assert_that(rejects | beam.Map(lambda r: (r["file_name"], r["reason"], r["detail"])),
                    equal_to([(name, reasons.UNREADABLE_IMAGE, detail)]))


def test_load_images_dead_letters_a_folder_named_like_an_image(tmp_path):
    (tmp_path / "folder.jpg").mkdir()  # a label naming a folder: one dead letter, job goes on
    _assert_single_reject(tmp_path, "folder.jpg",
                          "cannot read it: IsADirectoryError (Is a directory)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_load_images_dead_letters_a_file_it_may_not_read(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"x")
    (tmp_path / "secret.png").chmod(0)
    _assert_single_reject(tmp_path, "secret.png",
                          "cannot read it: PermissionError (Permission denied)")
