"""experiments.subset_data: the kept share of the training records matches --train_fraction."""

import json
import math

import pytest
import tensorflow as tf

from contract import schema
from experiments import subset_data


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.4, 0.5, 0.6, 0.7, 0.9, 1.0])
def test_keeps_exactly_floor_n_times_the_fraction(fraction):
    for n in (10, 97, 1000):
        kept = [i for i in range(n) if subset_data.keep(i, fraction)]
        assert len(kept) == math.floor(round(n * fraction, 9)), (n, fraction)
    # Spread over the whole list, not its head: UTKFace shards hold records in age order.
    kept = [i for i in range(1000) if subset_data.keep(i, fraction)]
    assert kept[-1] >= 1000 - 1 / fraction - 1
    assert max(b - a for a, b in zip([-1, *kept], kept, strict=False)) <= int(1 / fraction) + 1


def test_subset_writes_the_share_and_its_stats(tmp_path):
    data_dir, out = tmp_path / "data", tmp_path / "small"
    data_dir.mkdir()
    ages = [float(a) for a in range(20)]
    for index in range(2):
        with tf.io.TFRecordWriter(str(data_dir / schema.shard_name("train", index, 2))) as w:
            for age in ages[index::2]:
                w.write(schema.encode({
                    schema.IMAGE: b"jpeg", schema.HEIGHT: 8, schema.WIDTH: 8,
                    schema.ORIGINAL_HEIGHT: 8, schema.ORIGINAL_WIDTH: 8,
                    schema.FILENAME: f"{age:g}.jpg", schema.AGE: age, schema.ID: f"id{age:g}",
                    schema.BLUR: 1.0, schema.BRIGHTNESS: 1.0, "extra": {}}, []))
    (data_dir / schema.shard_name("validation", 0, 1)).write_bytes(b"")
    (data_dir / schema.shard_name("test", 0, 1)).write_bytes(b"")
    (data_dir / schema.STATS_FILE).write_text(json.dumps({
        "image_size": 8, "extra_columns": [], "max_age": 120,
        "splits": {"train": {"count": 20}, "validation": {"count": 0}, "test": {"count": 0}}}))

    # a stride of round(1/0.7) kept all:
    stats = subset_data.subset(str(data_dir), str(out), 0.7).to_dict()
    assert stats["splits"]["train"]["count"] == 14
    assert sum(stats["splits"]["train"]["age_histogram"]) == 14
    written = sum(1 for _ in tf.data.TFRecordDataset(
        [str(out / schema.shard_name("train", i, 2)) for i in range(2)]))
    assert written == 14
    assert stats["subset_of"] == {"data_dir": str(data_dir), "train_fraction": 0.7}
    with pytest.raises(ValueError, match="keeps none of the 20 training records"):
        subset_data.subset(str(data_dir), str(tmp_path / "none"), 0.01)
