"""Damaged data sets: the trainer's readers name the shard and what is wrong, never read less.

Real shards (preprocessing.fake_records: the pipeline's own writer and stats.json), damaged on
disk the way an interrupted copy, a flipped bit or a second run into the same folder damages
them, then read through trainer.data and trainer.evaluate.
"""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from fixed_models import mean_colour_model
from PIL import Image

from contract import schema
from contract import stats as stats_file
from contract.framing import Framing
from preprocessing import fake_records
from trainer import data, evaluate, export, shards

REPO = Path(__file__).resolve().parents[1]
SIZE = 16
COUNTS = {"train": 30, "test": 37}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return fake_records.write_dataset(tmp_path_factory.mktemp("pristine"), image_size=SIZE,
                                      counts=COUNTS, shards=3)


@pytest.fixture
def out(pristine, tmp_path):
    """A fresh copy of the data set for each test to damage."""
    return shutil.copytree(pristine, tmp_path / "data")


def _frames(path) -> list[tuple[int, int]]:
    """(offset, length) of each record's payload, from the TFRecord framing."""
    blob, offset, out = path.read_bytes(), 0, []
    while offset < len(blob):
        (length,) = struct.unpack("<Q", blob[offset:offset + 8])
        out.append((offset + 12, length))
        offset += 12 + length + 4
    return out


def _read_all(out, split="test", training=False):
    ds = data.build_dataset(str(out), split, batch_size=8, image_size=SIZE, training=training,
                            repeat=1)
    return sum(int(images.shape[0]) for images, _, _ in ds)


def _edit_stats(out, edit):
    path = out / schema.STATS_FILE
    stats = json.loads(path.read_text())
    edit(stats)
    path.write_text(json.dumps(stats))


def test_intact_data_reads_every_record(out):
    assert _read_all(out) == COUNTS["test"]
    assert shards.check_files(str(out), "test", data.list_files(str(out), "test"),
                              stats_file.read(str(out))) == [13, 12, 12]


def test_shard_truncated_at_a_record_boundary_is_named_before_reading(out):
    shard = out / schema.shard_name("test", 1, 3)
    offset, length = _frames(shard)[-3]  # keep 10 of its 12 records
    shard.write_bytes(shard.read_bytes()[:offset + length + 4])
    with pytest.raises(shards.ShardError, match=f"{shard} holds 10 readable records where "
                                                "stats.json lists 12 \\(2 missing\\)"):
        data.list_files(str(out), "test")


def test_short_shard_is_named_while_reading_when_sizes_are_not_listed(out):
    # Outputs without num_bytes (older ones, experiments.subset_data) rely on the count.
    _edit_stats(out, lambda s: s["splits"]["test"].pop("num_bytes"))
    shard = out / schema.shard_name("test", 2, 3)
    offset, length = _frames(shard)[-6]
    shard.write_bytes(shard.read_bytes()[:offset + length + 4])
    for training in (False, True):
        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            _read_all(out, training=training)
        message = shards.clean_error(caught.value)
        assert message == (f"damaged shard: {shard} holds 7 records where stats.json lists 12 "
                           "(5 missing): the file is truncated, or a record in it is corrupted "
                           "(the first read error is logged above), or it was replaced by a "
                           "shard of another run")


def test_corrupted_record_mid_file_names_the_shard(out):
    shard = out / schema.shard_name("test", 0, 3)
    offset, length = _frames(shard)[4]
    blob = bytearray(shard.read_bytes())
    blob[offset + length // 2] ^= 0xFF  # same size: only the record's CRC can tell
    shard.write_bytes(bytes(blob))
    assert data.list_files(str(out), "test")  # sizes agree: the damage shows while reading
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        _read_all(out)
    assert f"damaged shard: {shard} holds 4 records where stats.json lists 13 (9 missing)" in \
        shards.clean_error(caught.value)


def test_missing_shard_is_named(out):
    (out / schema.shard_name("test", 1, 3)).unlink()
    with pytest.raises(shards.ShardError, match="1 shard\\(s\\) missing .*test-00001-of-00003"):
        data.build_dataset(str(out), "test", batch_size=4, image_size=SIZE, training=False)


def test_foreign_shards_of_another_run_are_refused(out, tmp_path):
    fake_records.write_dataset(tmp_path / "other", image_size=SIZE, counts=COUNTS, shards=2,
                               seed=7)
    extra = tmp_path / "other" / schema.shard_name("test", 0, 2)
    shutil.copy(extra, out)
    with pytest.raises(shards.ShardError, match="test-00000-of-00002 .* do not belong"):
        data.list_files(str(out), "test")
    (out / extra.name).unlink()
    # Same name, other content: the sizes differ and the records say which one.
    fake_records.write_dataset(tmp_path / "other3", image_size=SIZE, counts={"test": 40},
                               shards=3, seed=9)
    shutil.copy(tmp_path / "other3" / schema.shard_name("test", 2, 3), out)
    with pytest.raises(shards.ShardError, match="test-00002-of-00003 holds 13 readable "
                                                "records where stats.json lists 12 \\(1 extra"):
        data.list_files(str(out), "test")


def test_per_file_sizes_are_used_when_stats_lists_them(out):
    names = [schema.shard_name("test", i, 3) for i in range(3)]
    sizes = {n: (out / n).stat().st_size for n in names}
    sizes[names[0]] += 1
    _edit_stats(out, lambda s: s["splits"]["test"].update(shards=sizes))
    with pytest.raises(shards.ShardError, match=f"damaged shard: .*{names[0]} holds 13 "
                                                "readable records in .* bytes"):
        data.list_files(str(out), "test")
    # A top-level map (file name -> bytes) is read the same way.
    _edit_stats(out, lambda s: (s["splits"]["test"].pop("shards"), s.update(shards=sizes)))
    with pytest.raises(shards.ShardError, match=names[0]):
        data.list_files(str(out), "test")


def _jpeg(width, height):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(buf, "JPEG")
    return buf.getvalue()


def _with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG whose frame header claims width x height (a few bytes, gigapixels)."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


def _decode_in_pipeline(jpeg, **kwargs):
    """decode_image as the input pipeline runs it (a tf.data map), or its one-line error."""
    ds = tf.data.Dataset.from_tensors(jpeg).map(lambda e: data.decode_image(e, SIZE, **kwargs))
    try:
        return next(iter(ds))
    except tf.errors.InvalidArgumentError as e:
        return shards.clean_error(e)


def test_record_decode_is_bounded_by_its_header():
    bomb = _with_declared_size(_jpeg(SIZE, SIZE), 60000, 60000)  # 3.6e9 pixels declared
    assert _decode_in_pipeline(bomb, name="x.jpg") == (
        "bad record x.jpg its JPEG header declares 60000 x 60000 pixels (width x height); "
        "limits: 40000000 pixels, aspect ratio 10")
    assert _decode_in_pipeline(_with_declared_size(_jpeg(SIZE, SIZE), 20000, 1)).startswith(
        "bad record  its JPEG header declares 20000 x 1 pixels")  # a strip: aspect ratio
    assert _decode_in_pipeline(_jpeg(64, 64), stored_size=SIZE, name="y.jpg") == (
        "bad record y.jpg its JPEG header declares 64 x 64 pixels (width x height); the "
        "records are 16x16 (stats.json image_size)")
    assert _decode_in_pipeline(_jpeg(64, 64)).shape == [SIZE, SIZE, 3]  # resized


def test_evaluate_refuses_a_damaged_split_in_one_line(out, tmp_path):
    model = tmp_path / "model"
    export.export_saved_model(mean_colour_model(SIZE), str(model / "saved_model"), Framing(SIZE),
                              "regression", max_age=120)
    _edit_stats(out, lambda s: s["splits"]["test"].pop("num_bytes"))
    shard = out / schema.shard_name("test", 1, 3)
    offset, length = _frames(shard)[-2]
    shard.write_bytes(shard.read_bytes()[:offset + length + 4])
    with pytest.raises(shards.ShardError) as caught:
        evaluate.evaluate(str(model), str(out), "test", str(tmp_path / "eval"))
    assert str(caught.value).startswith(f"damaged shard: {shard} holds 11 records where "
                                        "stats.json lists 12 (1 missing)")
    assert "\n" not in str(caught.value)
    # No per-shard counts at all: the split's total is still checked.
    _edit_stats(out, lambda s: s["splits"]["test"].pop("shard_lengths"))
    with pytest.raises(shards.ShardError, match="36 records .* stats.json lists 37"):
        evaluate.evaluate(str(model), str(out), "test", str(tmp_path / "eval"))


@pytest.mark.slow
def test_evaluate_cli_names_a_corrupted_shard_without_a_traceback(out, tmp_path):
    model = tmp_path / "model"
    export.export_saved_model(mean_colour_model(SIZE), str(model / "saved_model"), Framing(SIZE),
                              "regression", max_age=120)
    shard = out / schema.shard_name("test", 2, 3)
    offset, length = _frames(shard)[7]
    blob = bytearray(shard.read_bytes())
    blob[offset + 3] ^= 0x01
    shard.write_bytes(bytes(blob))
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.evaluate", f"--model={model}", f"--data_dir={out}",
         "--split=test", f"--output_dir={tmp_path / 'eval'}"], cwd=REPO,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (f"trainer.evaluate: damaged shard: {shard} holds 7 records where stats.json lists 12 "
            "(5 missing)") in proc.stderr
    assert not (tmp_path / "eval" / "predictions.csv").exists()
