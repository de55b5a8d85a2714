"""preprocessing.labels: the three label layouts, and which rows are rejected with which reason."""

import pytest

from contract import reasons
from preprocessing import dead_letters, labels


def test_csv_keeps_extra_columns_and_rejects_rows_it_does_not_understand():
    text = ("file_name,real_age,gender,subject\n"
            "a.jpg,31,1,s1\n"
            "b.jpg,abc,0,s2\n"         # non-numeric age
            "c.jpg,-2,0,s3\n"          # negative
            "d.jpg,121,0,s4\n"         # above max_age
            "e.jpg,nan,0,s5\n"         # not finite
            "f.jpg,40,0,s6,surplus\n"  # a field the header does not know
            ",40,0,s7\n"               # no file name
            "\n"                       # blank lines are skipped, not rejected
            "g.jpg,0.5,1,s8\n")
    rows, rejects = labels.parse_csv(text, "labels.csv", max_age=120)
    assert [(r.file_name, r.age, r.extra) for r in rows] == [
        ("a.jpg", 31.0, {"gender": "1", "subject": "s1"}),
        ("g.jpg", 0.5, {"gender": "1", "subject": "s8"})]
    assert rows[0].source == "labels.csv:2"
    assert [(r["file_name"], r["reason"]) for r in rejects if "file_name" in r] == [
        ("b.jpg", reasons.BAD_AGE), ("c.jpg", reasons.BAD_AGE), ("d.jpg", reasons.BAD_AGE),
        ("e.jpg", reasons.BAD_AGE), ("f.jpg", reasons.BAD_ROW)]
    assert rejects[-1]["reason"] == reasons.BAD_ROW and rejects[-1]["detail"] == "empty file_name"
    assert rejects[0]["input"] == "labels.csv:3: b.jpg,abc,0,s2"
    assert "not a number" in rejects[0]["detail"] and "above --max_age" in rejects[2]["detail"]


def test_csv_file_with_a_byte_order_mark_and_age_as_the_column_name(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("file_name,age\nx.png,7\n".encode("utf-8-sig"))  # spreadsheet export
    rows, rejects = labels.read_source(("csv", str(path), None, ""), max_age=120)
    assert [(r.file_name, r.age, r.extra) for r in rows] == [("x.png", 7.0, {})] and not rejects


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("name,real_age\na.jpg,3\n", "lacks 'file_name'"),
    ("file_name,years\na.jpg,3\n", "age column"),
    ("file_name,real_age,real_age\n", "repeats column"),
])
def test_a_csv_without_the_needed_header_is_a_label_error(text, message):
    with pytest.raises(labels.LabelError, match=message):
        labels.parse_csv(text, "labels.csv", max_age=120)


def test_utkface_names():
    names = ["25_0_1_20170116174525125.jpg.chip.jpg", "3_1_2_20161219140530307.jpg",
             "39_1_20170116174525125.jpg.chip.jpg",  # race missing, as in real UTKFace
             "130_0_0_20170117.jpg", "labels.csv"]
    rows, rejects = labels.parse_utkface_names(names, max_age=120)
    assert [(r.file_name, r.age, r.extra) for r in rows] == [
        (names[0], 25.0, {"gender": "0", "race": "1"}),
        (names[1], 3.0, {"gender": "1", "race": "2"})]
    assert [(r["file_name"], r["reason"]) for r in rejects] == [
        (names[2], reasons.BAD_ROW), (names[3], reasons.BAD_AGE)]  # labels.csv is not an image


def test_appa_real_keeps_its_own_split_and_apparent_age(tmp_path):
    header = "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n"
    for folder, row in (("train", "000001.jpg,38,27.1,4.3,25\n"),
                        ("valid", "004113.jpg,40,55.0,6.1,58\n"),
                        ("test", "005613.jpg,36,8.2,1.9,9\n")):
        (tmp_path / f"gt_avg_{folder}.csv").write_text(header + row)
    units = labels.sources("appa_real", str(tmp_path), "/data/appa")
    rows = [r for unit in units for r in labels.read_source(unit, max_age=120)[0]]
    assert [(r.file_name, r.age, r.split) for r in rows] == [
        ("train/000001.jpg", 25.0, "train"), ("valid/004113.jpg", 58.0, "validation"),
        ("test/005613.jpg", 9.0, "test")]
    assert rows[0].extra == {"num_ratings": "38", "apparent_age_avg": "27.1",
                             "apparent_age_std": "4.3"}
    assert labels.extra_columns("appa_real", str(tmp_path), "/data/appa") == [
        "num_ratings", "apparent_age_avg", "apparent_age_std"]


def test_identical_labels_compare_equal_and_different_ones_do_not():
    a = labels.LabelRow("a.jpg", 30.0, "l:2", {"gender": "1"})
    b = labels.LabelRow("b.jpg", 30.0, "l:3", {"gender": "1"})
    c = labels.LabelRow("c.jpg", 30.0, "l:4", {"gender": "0"})
    assert a.label_key() == b.label_key() != c.label_key()


def test_rejection_refuses_unknown_reason_codes():
    with pytest.raises(ValueError, match="unknown rejection reason"):
        dead_letters.rejection("x", "looks_odd", "?")


@pytest.mark.parametrize("payload, message", [
    ("file_name,real_age\nzoë.jpg,3\n".encode("latin-1"), r"not UTF-8 text \(byte 21"),
    (b"file_name,real_age\n\"" + b"x" * 200_000 + b"\",3\n", "not a readable CSV"),
])
def test_a_label_file_that_is_not_utf8_csv_is_a_label_error_naming_it(tmp_path, payload,
                                                                      message):
    # A LabelError becomes a dead-letter line for the file; anything else kills the whole job.
    path = tmp_path / "labels.csv"
    path.write_bytes(payload)
    with pytest.raises(labels.LabelError, match=f"{path}: {message}"):
        labels.read_source(("csv", str(path), None, ""), max_age=120)


def test_a_label_file_is_streamed_not_held_whole(tmp_path):
    # 5,000 rows: iterating holds a few rows at a time, a whole read holds them all.
    import tracemalloc

    from apache_beam.io import filesystems  # noqa: F401  (imported outside the measurement)

    path = tmp_path / "labels.csv"
    path.write_text("file_name,real_age,gender\n" + "".join(
        f"face_{i:06d}.jpg,{i % 90},{i % 2}\n" for i in range(5_000)))
    unit = ("csv", str(path), None, "")

    def peak_bytes(read) -> int:
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    count = 0

    def stream():
        nonlocal count
        count = sum(1 for _ in labels.iter_source(unit, max_age=120))

    streamed = peak_bytes(stream)
    whole = peak_bytes(lambda: labels.read_source(unit, max_age=120))
    assert count == 5_000
    assert streamed < whole / 8, f"streaming peaked at {streamed} bytes, a whole read {whole}"


def test_a_fault_late_in_a_label_file_rejects_it_before_any_row(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"file_name,real_age\n" + b"a.jpg,3\n" * 50_000 + "zoë.jpg,4\n".encode(
        "latin-1"))
    items = labels.iter_source(("csv", str(path), None, ""), max_age=120)
    with pytest.raises(labels.LabelError, match=r"not UTF-8 text \(byte 400021"):
        next(items)  # nothing was yielded before the whole file was checked
