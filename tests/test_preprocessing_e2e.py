"""preprocessing.run end to end on the DirectRunner, on a small synthetic sample.

The sample (preprocessing.synthetic) holds good faces, broken entries of every kind and exact
duplicates, with a manifest of what a correct job must reject and why.
"""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from contract import reasons, schema
from contract.files import read_json
from preprocessing import publish, synthetic
from preprocessing import run as run_module

IMAGE_SIZE = 32


def _run(sample, output_dir, *flags):
    return run_module.run([
        f"--labels={sample.labels_csv}", f"--images={sample.images_dir}",
        f"--output_dir={output_dir}", f"--image_size={IMAGE_SIZE}", "--runner=DirectRunner",
        *flags])


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _shards(output_dir):
    return sorted(n for n in os.listdir(output_dir) if "-of-" in n)


def _errors(output_dir):
    lines = []
    for name in sorted(os.listdir(os.path.join(output_dir, schema.ERRORS_DIR))):
        with open(os.path.join(output_dir, schema.ERRORS_DIR, name)) as f:
            lines += [json.loads(line) for line in f if line.strip()]
    return lines


def _records(paths):
    ds = tf.data.TFRecordDataset(paths).batch(64).map(lambda s: schema.parse(s, ["gender"]))
    out = {}
    for batch in ds:
        for key, values in batch.items():
            out.setdefault(key, []).extend(values.numpy().tolist())
    return out


def _membership(output_dir):
    """split -> sorted ids, read back from the shards."""
    result = {}
    for split in schema.SPLITS:
        paths = [os.path.join(output_dir, n) for n in _shards(output_dir)
                 if n.startswith(split + "-")]
        result[split] = sorted(_records(paths).get(schema.ID, [])) if paths else []
    return result


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    # Seed 5 puts kept faces in all three splits (40 faces at 80/10/10 can leave one empty).
    return synthetic.generate(str(tmp_path_factory.mktemp("sample")), num_images=40,
                              image_size=IMAGE_SIZE, seed=5, corrupt_fraction=0.2,
                              duplicate_fraction=0.1)


@pytest.fixture(scope="module")
def first_run(sample, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("out"))
    stats = _run(sample, out, "--num_shards=2")
    files = {n: _read(os.path.join(out, n)) for n in _shards(out)}
    return {"out": out, "stats": stats, "files": files, "membership": _membership(out)}


def test_counts_add_up_to_the_valid_inputs(sample, first_run):
    stats = first_run["stats"]
    counts = {name: s["count"] for name, s in stats["splits"].items()}
    assert sum(counts.values()) == sample.expected_num_kept
    assert all(counts[name] > 0 for name in ("train", "validation", "test"))
    # Same-label duplicates are merged into their source, never dead-lettered.
    assert stats["duplicates_merged"] == sum(not d.conflict for d in sample.duplicates)
    total_entries = len(sample.good) + len(sample.broken) + len(sample.duplicates)
    assert stats["inputs"] == total_entries
    for name, s in stats["splits"].items():
        assert sum(s["age_histogram"]) == s["count"] == sum(s["shard_lengths"])
        ages = _records([os.path.join(first_run["out"], n) for n in _shards(first_run["out"])
                         if n.startswith(name + "-")])[schema.AGE]
        assert s["mean_age"] == pytest.approx(sum(ages) / len(ages), rel=1e-12)
        assert s["num_shards"] == 2
    assert set(stats["blur_quantiles"]) == {"0.1", "0.5", "0.9"}


def test_each_broken_input_is_in_errors_once_with_its_reason(sample, first_run):
    errors = _errors(first_run["out"])
    assert os.listdir(os.path.join(first_run["out"], schema.ERRORS_DIR)) == ["errors.jsonl"]
    lines = [json.dumps(line, sort_keys=True) for line in errors]
    assert lines == sorted(lines)  # sorted: the same inputs give the same file
    got = {}
    for line in errors:
        assert {"input", "reason", "detail"} <= set(line), line
        assert line["file_name"] not in got, f"{line['file_name']} dead-lettered twice"
        got[line["file_name"]] = line["reason"]
    assert got == sample.expected_rejects
    assert first_run["stats"]["rejects"] == {
        r: list(sample.expected_rejects.values()).count(r)
        for r in sorted(set(sample.expected_rejects.values()))}


def test_records_parse_with_the_shared_schema(sample, first_run):
    out = first_run["out"]
    records = _records([os.path.join(out, n) for n in _shards(out)])
    names = [n.decode() for n in records[schema.FILENAME]]
    # Of a same-label duplicate pair either copy may be kept: compare by the source's name.
    source_of = {d.file_name: d.source for d in sample.duplicates if not d.conflict}
    assert sorted(source_of.get(n, n) for n in names) == sorted(
        set(sample.good) - set(sample.expected_rejects))
    assert set(records[schema.HEIGHT]) == {IMAGE_SIZE}
    image = tf.io.decode_jpeg(records[schema.IMAGE][0])
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    with open(sample.labels_csv) as f:
        label = dict(line.split(",")[:2] for line in f.read().split()[1:])
    ages = {name: float(label[name]) for name in names}
    for name, age in zip(names, records[schema.AGE], strict=True):
        assert age == ages[name]


def test_tfds_loads_every_split(first_run):
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(first_run["out"])
    for name, s in first_run["stats"]["splits"].items():
        assert builder.info.splits[name].num_examples == s["count"]
        examples = list(builder.as_dataset(split=name).take(2))
        assert examples[0]["image"]["encoded"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        assert examples[0]["extra"]["gender"].numpy() in (b"0", b"1")
    assert first_run["stats"]["tfds_metadata"] == "written"


def test_rerun_is_byte_identical_and_leaves_no_stale_shards(sample, first_run, tmp_path):
    out = str(tmp_path)
    _run(sample, out, "--num_shards=3")
    assert all(n.endswith("-of-00003") for n in _shards(out))
    _run(sample, out, "--num_shards=2")  # the earlier run's 3-shard files must all go
    assert _shards(out) == sorted(first_run["files"])
    for name, data in first_run["files"].items():
        assert _read(os.path.join(out, name)) == data, name
    assert not os.path.exists(os.path.join(out, publish.STAGING_DIR))


def test_an_interrupted_run_leaves_nothing_behind(sample, tmp_path):
    # What an interruption leaves: a staging folder with a stale shard, and shards of a run
    # with another shard count. The next run must neither reuse nor keep any of them.
    out = tmp_path / "out"
    staging = out / publish.STAGING_DIR
    staging.mkdir(parents=True)
    (staging / "train-00000-of-00009").write_bytes(b"stale")
    (out / "train-00004-of-00009").write_bytes(b"stale")
    _run(sample, str(out), "--num_shards=1")
    assert _shards(str(out)) == ["test-00000-of-00001", "train-00000-of-00001",
                                 "validation-00000-of-00001"]
    assert not staging.exists()


@pytest.mark.slow
def test_multi_processing_runner_gives_the_same_shards(sample, first_run, tmp_path):
    out = str(tmp_path)
    _run(sample, out, "--num_shards=2", "--direct_running_mode=multi_processing",
         "--direct_num_workers=2")
    for name, data in first_run["files"].items():
        assert _read(os.path.join(out, name)) == data, name


def test_the_job_runs_without_tensorflow(sample, first_run, tmp_path):
    # Dataflow workers get setup.py without the TensorFlow extra: nothing the job runs (load,
    # encode, shard writing, stats, TFDS metadata) may import it. A fresh interpreter, since
    # this test process has TensorFlow loaded already.
    code = ("import sys; from preprocessing import run; run.run(sys.argv[1:]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    proc = subprocess.run(
        [sys.executable, "-c", code, f"--labels={sample.labels_csv}",
         f"--images={sample.images_dir}", f"--output_dir={tmp_path}",
         f"--image_size={IMAGE_SIZE}", "--num_shards=2"],
        capture_output=True, text=True, check=True, timeout=300)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert {n: _read(os.path.join(tmp_path, n)) for n in _shards(str(tmp_path))} == \
        first_run["files"]


def test_group_by_keeps_each_group_in_one_split(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rows = ["file_name,real_age,person"]
    for i in range(24):
        Image.new("RGB", (20, 20), (i * 10, 50, 90)).save(images / f"p{i}.png")
        rows.append(f"p{i}.png,{20 + i},person{i % 4}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    run_module.run([f"--labels={tmp_path / 'labels.csv'}", f"--images={images}",
                    f"--output_dir={out}", "--image_size=32", "--group_by=person"])
    splits_of_person = {}
    for name in _shards(str(out)):
        recs = tf.data.TFRecordDataset(str(out / name)).map(
            lambda s: schema.parse(s, ["person"]))
        for r in recs:
            splits_of_person.setdefault(r["extra/person"].numpy(), set()).add(name.split("-")[0])
    assert len(splits_of_person) == 4
    assert all(len(s) == 1 for s in splits_of_person.values())


def _png(path, colour):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), colour).save(path)


def test_utkface_file_names_are_the_labels(tmp_path):
    images = tmp_path / "UTKFace"
    for i, name in enumerate(["25_0_1_20170116174525125.jpg.chip.jpg",
                              "3_1_2_20161219140530307.jpg.chip.jpg",
                              "39_1_20170116174525125.jpg.chip.jpg"]):  # race missing
        _png(images / name, (i * 60, 90, 30))
    stats = run_module.run([f"--images={images}", f"--output_dir={tmp_path / 'out'}",
                            "--label_format=utkface", "--image_size=32", "--split_ratios=1,0,0"])
    assert stats["splits"]["train"]["count"] == 2 and stats["rejects"] == {reasons.BAD_ROW: 1}
    assert stats["extra_columns"] == ["gender", "race"]
    records = _records(sorted(str(p) for p in (tmp_path / "out").glob("train-*")))
    assert sorted(records[schema.AGE]) == [3.0, 25.0]


def test_appa_real_keeps_its_own_split(tmp_path):
    header = "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n"
    for i, folder in enumerate(("train", "valid", "test")):
        (tmp_path / f"gt_avg_{folder}.csv").write_text(header + f"{i}.jpg,30,2{i}.5,3.1,2{i}\n")
        _png(tmp_path / "images" / folder / f"{i}.jpg", (i * 80, 10, 200))
    stats = run_module.run([f"--labels={tmp_path}", f"--images={tmp_path / 'images'}",
                            f"--output_dir={tmp_path / 'out'}", "--label_format=appa_real",
                            "--image_size=32"])
    assert {n: s["count"] for n, s in stats["splits"].items()} == {
        "train": 1, "validation": 1, "test": 1}
    records = tf.data.TFRecordDataset(str(tmp_path / "out" / "validation-00000-of-00001")).map(
        lambda s: schema.parse(s, stats["extra_columns"]))
    (record,) = list(records)
    assert record[schema.AGE].numpy() == 21.0
    assert record["extra/apparent_age_avg"].numpy() == b"21.5"


def _run_staging(out):
    """The staging folder of the one run that left one (each run stages in its own)."""
    (staged,) = (out / publish.STAGING_DIR).iterdir()
    return staged


def test_an_all_bad_run_exits_non_zero_with_a_clear_message(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "labels.csv").write_text("file_name,real_age\na.jpg,30\nb.jpg,40\nc.jpg,-3\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run_module.main([f"--labels={tmp_path / 'labels.csv'}", f"--images={tmp_path / 'images'}",
                         f"--output_dir={out}", "--image_size=32"])
    message = str(exit_info.value.code)
    assert "no valid records: all 3 inputs were rejected" in message
    assert "bad_age: 1" in message and "missing_file: 1" in message
    assert "unreadable_image: 1" in message
    # Nothing is published; the dead letters stay readable in staging, where the message points.
    staged = _run_staging(out)
    assert f"{staged / schema.ERRORS_DIR}/" in message and "nothing was published" in message
    assert {e["reason"] for e in _errors(str(staged))} == {
        reasons.BAD_AGE, reasons.MISSING_FILE, reasons.UNREADABLE_IMAGE}
    assert _shards(str(out)) == []
    assert not (out / schema.STATS_FILE).exists() and not (out / schema.ERRORS_DIR).exists()


def test_an_all_bad_rerun_keeps_the_previous_good_output(tmp_path):
    rows = ["file_name,real_age"]
    for i in range(3):
        _png(tmp_path / "images" / f"f{i}.png", (i * 70, 120, 40))
        rows.append(f"f{i}.png,{20 + i}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "wrong").mkdir()  # a mistaken --images: none of the labelled files is there
    (tmp_path / "wrong" / "other.png").write_bytes(b"x")
    out = tmp_path / "out"

    def flags(images):
        return [f"--labels={tmp_path / 'labels.csv'}", f"--images={images}",
                f"--output_dir={out}", "--image_size=32", "--split_ratios=1,0,0"]

    run_module.run(flags(tmp_path / "images"))
    before = {n: _read(str(out / n)) for n in [*_shards(str(out)), schema.STATS_FILE]}
    assert before and any(n.startswith("train-") for n in before)
    with pytest.raises(SystemExit) as exit_info:
        run_module.main(flags(tmp_path / "wrong"))
    assert "no valid records: all 3 inputs were rejected (missing_file: 3)" in str(
        exit_info.value.code)
    assert {n: _read(str(out / n)) for n in [*_shards(str(out)), schema.STATS_FILE]} == before
    assert _errors(str(out)) == []  # the good run had no rejects, and its errors/ is kept
    assert [e["reason"] for e in _errors(str(_run_staging(out)))] == [reasons.MISSING_FILE] * 3


def test_reads_and_writes_gs_paths_on_the_emulator(sample, first_run, gcs_bucket,
                                                   beam_gcs_no_credential_wait):
    from apache_beam.io.filesystems import FileSystems
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = storage.Client(project="test-project",
                            credentials=AnonymousCredentials()).bucket(gcs_bucket)
    for root, _, files in os.walk(sample.output_dir):
        for name in files:
            path = os.path.join(root, name)
            bucket.blob("in/" + os.path.relpath(path, sample.output_dir)).upload_from_filename(path)
    out = f"gs://{gcs_bucket}/out"
    stats = run_module.run([
        f"--labels=gs://{gcs_bucket}/in/labels.csv", f"--images=gs://{gcs_bucket}/in/images",
        f"--output_dir={out}", f"--image_size={IMAGE_SIZE}", "--num_shards=2"])

    # Same inputs, same flags: the same shard bytes as the local run.
    shards = FileSystems.match([out + "/*-of-*"])[0].metadata_list
    assert sorted(os.path.basename(m.path) for m in shards) == sorted(first_run["files"])
    for m in shards:
        with FileSystems.open(m.path) as f:
            assert f.read() == first_run["files"][os.path.basename(m.path)]
    assert read_json(out + "/stats.json")["splits"] == first_run["stats"]["splits"]
    errors = FileSystems.match([out + "/errors/*.jsonl"])[0].metadata_list
    lines = []
    for m in errors:
        with FileSystems.open(m.path) as f:
            lines += [json.loads(x) for x in f.read().decode().splitlines() if x]
    assert {x["file_name"]: x["reason"] for x in lines} == sample.expected_rejects
    assert not FileSystems.match([out + "/.staging/**"])[0].metadata_list
    # The TFDS metadata goes through FileSystems too, and matches the local run's.
    assert stats["tfds_metadata"] == "written"
    for name in ("dataset_info.json", "features.json"):
        assert read_json(f"{out}/{name}") == json.loads(
            _read(os.path.join(first_run["out"], name))), name
    info = read_json(out + "/dataset_info.json")
    assert {s["name"]: [int(n) for n in s["shardLengths"]] for s in info["splits"]} == {
        name: s["shard_lengths"] for name, s in first_run["stats"]["splits"].items()}
