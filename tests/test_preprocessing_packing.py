"""packing: Pack, GroupByKey and unpack_bucket group exactly like GroupByKey, with batches
bounded per worker."""

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from preprocessing import packing


def _sorted_groups(item):
    key, values = item
    return key, sorted(values)


def _spilled(item):
    """What crossed the shuffle must be byte ranges in files, not the packed batches."""
    for ref in item[1]:
        path, offset, size = ref
        assert path.endswith(".pairs") and offset >= 0 and size > 0
    return item


@pytest.mark.parametrize("spill", [False, True])
@pytest.mark.parametrize("held", [3, packing.HELD])  # flushed mid-bundle, and only at its end
def test_packed_grouping_gives_what_group_by_key_gives(monkeypatch, tmp_path, held, spill):
    monkeypatch.setattr(packing, "HELD", held)
    spill_dir = str(tmp_path / "shuffle") if spill else None
    pairs = [(f"face_{i % 37}.jpg", (i, float(i) / 2, {"gender": str(i % 2)}, None))
             for i in range(200)] + [(b"\x00id", ("bytes key", 1.5, {}, "test"))]
    expected = {}
    for key, value in pairs:
        expected.setdefault(key, []).append(value)
    with beam.Pipeline("DirectRunner") as p:
        grouped = (p | beam.Create(pairs) | packing.Pack(spill_dir) | beam.GroupByKey()
                   | beam.FlatMap(packing.unpack_bucket) | beam.Map(_sorted_groups))
        assert_that(grouped, equal_to([(k, sorted(v)) for k, v in expected.items()]))
    if spill:  # the batches went through files, a few per flush, not one per pair
        written = list((tmp_path / "shuffle").iterdir())
        assert 1 <= len(written) <= -(-len(pairs) // held) + 1


def test_spilled_batches_cross_the_shuffle_as_byte_ranges(tmp_path):
    pairs = [(f"k{i % 5}", i) for i in range(50)]
    spill_dir = str(tmp_path / "shuffle")
    with beam.Pipeline("DirectRunner") as p:
        shuffled = (p | beam.Create(pairs) | packing.Pack(spill_dir)
                    | beam.GroupByKey() | beam.Map(_spilled))
        grouped = shuffled | beam.FlatMap(packing.unpack_bucket) | beam.Map(_sorted_groups)
        assert_that(grouped, equal_to([(f"k{k}", list(range(k, 50, 5))) for k in range(5)]))


def test_buckets_are_stable_and_spread():
    names = [f"face_{i:06d}.jpg" for i in range(20_000)]
    assert packing.bucket("face_000001.jpg") == packing.bucket("face_000001.jpg")
    assert packing.bucket("abc") == packing.bucket(b"abc")
    counts = {}
    for name in names:
        counts[packing.bucket(name)] = counts.get(packing.bucket(name), 0) + 1
    assert len(counts) == packing.NUM_BUCKETS  # every bucket used: work spreads over workers
    assert max(counts.values()) < 3 * len(names) / packing.NUM_BUCKETS


def test_unpack_groups_values_of_one_key_across_batches():
    coder = packing._CODER
    batches = [coder.encode([("a", 1), ("b", 2)]), coder.encode([("a", 3)])]
    assert packing.unpack(batches) == [("a", [1, 3]), ("b", [2])]
