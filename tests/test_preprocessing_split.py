"""preprocessing.split: the split and shard of a record depend on its key alone."""

import collections
import math

import pytest

from preprocessing import split


def test_same_key_same_split_and_ratios_are_respected():
    keys = [split.record_id(f"image {i}".encode()) for i in range(20000)]
    first = [split.assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
    assert first == [split.assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
    counts = collections.Counter(first)
    for name, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert counts[name] == pytest.approx(20000 * ratio, rel=0.05)


def test_a_zero_ratio_split_gets_nothing():
    keys = [str(i) for i in range(2000)]
    assert {split.assign_split(k, (0.5, 0.0, 0.5)) for k in keys} == {"train", "test"}
    assert {split.assign_split(k, (1.0, 0.0, 0.0)) for k in keys} == {"train"}


def test_group_key_puts_a_whole_group_in_one_split():
    keys = [split.split_key(split.record_id(bytes([i])), "person-7") for i in range(50)]
    assert len({split.assign_split(k) for k in keys}) == 1
    assert split.split_key("abc", None) == "abc"


def test_record_id_is_a_content_hash():
    assert split.record_id(b"same bytes") == split.record_id(b"same bytes")
    assert split.record_id(b"same bytes") != split.record_id(b"other bytes")
    assert len(split.record_id(b"")) == 32


def test_shard_index_is_in_range_and_spread():
    keys = [str(i) for i in range(4000)]
    counts = collections.Counter(split.shard_index(k, 4) for k in keys)
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 900


def test_automatic_shard_count_aims_at_128_mb():
    assert split.auto_num_shards(0) == 1
    assert split.auto_num_shards(128 * 2**20) == 1
    assert split.auto_num_shards(128 * 2**20 + 1) == 2


def test_choose_split_prefers_the_fixed_split_then_the_group():
    assert split.choose_split("abc", "validation", "p1") == "validation"
    assert split.choose_split("abc", None, "p1") == split.assign_split("group:p1")
    assert split.choose_split("abc", None, None) == split.assign_split("abc")


def test_expected_counts_of_one_label_row():
    assert split.expected_counts(None, None, (0.8, 0.2, 0.0)) == {"train": 0.8, "validation": 0.2}
    assert split.expected_counts("test", None) == {"test": 1.0}
    assert split.expected_counts(None, "p1") == {split.assign_split("group:p1"): 1.0}


def test_planned_num_shards_by_flag_by_size_and_never_more_than_records():
    assert split.planned_num_shards(1000, 4, 224) == 4
    assert split.planned_num_shards(2.5, 4, 224) == 3  # a tiny split: at most one per record
    assert split.planned_num_shards(0.4, 0, 224) == 1
    per_record = split.estimated_record_bytes(224)
    assert 9_000 < per_record < 30_000  # UTKFace faces at 224 px, quality 90: ~9.5 KB
    records_per_shard = split.TARGET_SHARD_BYTES / per_record
    floor = split.MIN_AUTO_SHARDS
    assert split.planned_num_shards(records_per_shard, 0, 224) == floor  # the floor, not 1
    assert split.planned_num_shards((floor + 4) * records_per_shard + 1, 0, 224) == floor + 5


@pytest.mark.parametrize("records, expected", [
    (1, 1), (5, 5), (15.2, 16), (16, 16), (2026, 16), (16015, 16)])
def test_automatic_shards_have_a_floor_for_multi_worker_pools(records, expected):
    """UTKFace's validation split (2,026 records at 96 px, ~3 MB) got 1 shard before the floor,
    which no 2-worker pool could share; now every split has MIN_AUTO_SHARDS or one per record."""
    assert split.MIN_AUTO_SHARDS == 16
    assert split.planned_num_shards(records, 0, 96) == expected
    # An explicit --num_shards is taken as given (the floor is for the automatic count only).
    assert split.planned_num_shards(records, 2, 96) == min(2, math.ceil(records))
