"""preprocessing.fake_records: tiny datasets in the preprocessing layout, read back for real."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from contract import schema
from contract import stats as stats_file
from preprocessing import fake_records, stats_assembly


def _read(out_dir, split):
    paths = sorted(str(p) for p in out_dir.glob(schema.SHARD_GLOB.format(split=split)))
    return [schema.parse(s) for s in tf.data.TFRecordDataset(paths)]


def test_layout_stats_and_records_agree(tmp_path):
    out = fake_records.write_dataset(tmp_path / "data", image_size=32, shards=3,
                                     counts={"train": 10, "test": 4})
    stats = stats_file.read(out).to_dict()
    train = stats["splits"]["train"]
    assert (stats["image_size"], stats["max_age"], stats["extra_columns"]) == (32, 100, [])
    assert (train["count"], train["num_shards"], train["shard_lengths"]) == (10, 3, [4, 3, 3])
    validation = stats["splits"]["validation"]  # not asked for: empty, as the pipeline writes it
    assert (validation["count"], validation["num_shards"], validation["mean_age"]) == (0, 0, None)
    records = _read(tmp_path / "data", "train")
    ages = [float(r[schema.AGE]) for r in records]
    assert train["mean_age"] == pytest.approx(np.mean(ages), rel=1e-12)
    assert train["age_histogram"] == stats_assembly.age_histogram(ages, 100)
    assert sum(os.path.getsize(p) for p in (tmp_path / "data").glob("train-*")) == (
        train["num_bytes"])
    image = tf.io.decode_jpeg(records[0][schema.IMAGE]).numpy()
    assert image.shape == (32, 32, 3)
    for r in records:  # quality measured on the image, in the pipeline's ranges
        assert 0.0 < float(r[schema.BRIGHTNESS]) < 1.0 and float(r[schema.BLUR]) > 0.0
    assert len(_read(tmp_path / "data", "test")) == 4


def test_same_arguments_same_bytes(tmp_path):
    for name in ("a", "b"):
        fake_records.write_dataset(tmp_path / name, counts={"train": 6}, shards=2, seed=3,
                                   draw=fake_records.drawn_face)
    for shard in ("train-00000-of-00002", "train-00001-of-00002", "stats.json"):
        assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()


def test_signal_image_brightens_with_age():
    rng = np.random.default_rng(0)
    young, old = (fake_records.signal_image(age, 32, rng) for age in (5.0, 80.0))
    assert young.dtype == np.uint8 and young.shape == (32, 32, 3)
    assert old.mean() > young.mean() + 50


def test_drawn_face_is_an_image_of_the_size():
    face = fake_records.drawn_face(40.0, 48, np.random.default_rng(0))
    assert face.dtype == np.uint8 and face.shape == (48, 48, 3) and face.std() > 10


@pytest.mark.parametrize("kwargs, message", [
    ({"counts": {"training": 3}}, "'training' is not a split"),
    ({"counts": {"train": -1}}, "counts['train']=-1"),
    ({"shards": 0}, "shards=0"),
    ({"image_size": 0}, "image_size=0"),
])
def test_bad_arguments_name_the_argument(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fake_records.write_dataset(tmp_path, **kwargs)
