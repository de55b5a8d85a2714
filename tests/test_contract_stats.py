"""contract.stats: stats.json's one reader, its defaults for older files and its errors."""

import json

import pytest

from contract import limits
from contract import stats as stats_file
from contract.stats import SplitStats, Stats
from preprocessing import fake_records, stats_assembly

# What preprocessing.run wrote before it recorded the framing, the limits and a version.
OLD = {"image_size": 64, "extra_columns": ["gender"], "max_age": 120,
       "splits": {"train": {"count": 3, "num_shards": 1, "age_histogram": [0, 3],
                            "mean_age": 1.5},
                  "validation": {"count": 0}}}


def test_an_older_stats_json_loads_with_the_documented_defaults():
    stats = Stats.from_dict(OLD, "old/stats.json")
    assert (stats.version, stats.resize, stats.margin) == (1, "crop", 0.0)
    assert (stats.max_pixels, stats.max_aspect_ratio) == (limits.MAX_PIXELS,
                                                          limits.MAX_ASPECT_RATIO)
    assert stats.splits["train"] == SplitStats(count=3, num_shards=1, age_histogram=(0, 3),
                                               mean_age=1.5)
    assert stats.split("validation").num_shards is None and stats.split("test") is None
    assert stats.extra_columns == ("gender",) and stats.shards is None


def test_to_json_and_back_is_the_same_value(tmp_path):
    out = fake_records.write_dataset(tmp_path / "d", image_size=8, counts={"train": 3},
                                     shards=2)
    stats = stats_file.read(out)
    assert Stats.from_json(stats.to_json(), "x") == stats
    assert json.loads((tmp_path / "d" / "stats.json").read_text()) == stats.to_dict()
    assert stats.splits["train"].shard_lengths == (2, 1) and stats.resize == "crop"


@pytest.mark.parametrize("edit, field", [
    (lambda s: s.pop("splits"), "'splits' is missing"),
    (lambda s: s.update(image_size="64"), "'image_size' must be a int"),
    (lambda s: s["splits"]["train"].update(count=-1), "'splits.train.count' must be a int >= 0"),
    (lambda s: s["splits"]["train"].update(age_histogram=[1, 2.5]),
     r"'splits.train.age_histogram\[1\]' must be a int"),
    (lambda s: s.update(margin=0.7), "'margin' is 0.7: expected 0 <= margin < 0.5"),
    (lambda s: s.update(version=stats_file.VERSION + 1), "'version' is 2"),
    (lambda s: s["splits"].update(test=[]), "'splits.test' must be a JSON object"),
])
def test_errors_name_the_file_and_the_field(edit, field):
    bad = json.loads(json.dumps(OLD))
    edit(bad)
    with pytest.raises(ValueError, match=f"^gs://b/out/stats.json: field {field}"):
        Stats.from_json(json.dumps(bad), "gs://b/out/stats.json")


def test_read_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="stats.json not found"):
        stats_file.read(str(tmp_path))
    (tmp_path / "stats.json").write_text("{")
    with pytest.raises(ValueError, match=f"{tmp_path}/stats.json is not valid JSON"):
        stats_file.read(str(tmp_path))


def test_read_from_gcs_without_tensorflow(gcs_bucket):
    out = f"gs://{gcs_bucket}/out"
    stats_assembly.write_stats(out, Stats.from_dict(OLD))
    assert stats_file.read(out) == Stats.from_dict(OLD)
    with pytest.raises(FileNotFoundError, match=f"gs://{gcs_bucket}/none/stats.json"):
        stats_file.read(f"gs://{gcs_bucket}/none")
