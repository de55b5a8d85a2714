"""preprocessing.fragments: a bundle's framed records go to one file and come back per shard."""

import pytest

from preprocessing import fragments, tfrecord_writer


def _frame(i):
    return tfrecord_writer.tfrecord_frames([f"record {i}".encode() * (i + 1)])


def _fill(spill, keys):
    for i, key in enumerate(keys):
        frame = _frame(i)
        spill.add(key, fragments.Entry(f"id{i}", f"{i}.jpg", float(i), 0.5, len(frame)), frame)


def test_flush_writes_one_file_with_each_shard_contiguous_and_read_gives_it_back(tmp_path):
    spill = fragments.Spill(str(tmp_path))
    keys = [("train", 1, 2), ("test", 0, 1), ("train", 1, 2), ("train", 0, 2)]
    _fill(spill, keys)
    parts = spill.flush()
    assert [k for k, _ in parts] == sorted(set(keys))
    assert len({part.path for _, part in parts}) == 1  # one fragment per flush
    got = {key: [(e.file_name, frame) for e, frame in fragments.read(part)]
           for key, part in parts}
    assert got[("train", 1, 2)] == [("0.jpg", _frame(0)), ("2.jpg", _frame(2))]
    assert got[("test", 0, 1)] == [("1.jpg", _frame(1))]
    assert got[("train", 0, 2)] == [("3.jpg", _frame(3))]
    assert spill.flush() == [] and spill.num_bytes == 0  # emptied: nothing written twice


def test_full_after_flush_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(fragments, "FLUSH_BYTES", 3 * len(_frame(1)))
    spill = fragments.Spill(str(tmp_path))
    _fill(spill, [("train", 0, 1)] * 2)
    assert not spill.full()
    _fill(spill, [("train", 0, 1)] * 2)
    assert spill.full()


def test_read_names_a_fragment_that_lost_bytes(tmp_path):
    spill = fragments.Spill(str(tmp_path))
    _fill(spill, [("train", 0, 1)] * 3)
    (_, part), = spill.flush()
    with open(part.path, "r+b") as f:
        f.truncate(part.size + part.entries_size - 1)
    with pytest.raises(OSError, match=part.path + ".*expected"):
        fragments.read(part)
