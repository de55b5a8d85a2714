"""TFDS metadata without TFDS: the JSON preprocessing writes is what TFDS writes, and TFDS loads it.

preprocessing writes features.json and dataset_info.json as plain JSON so that publishing needs
no TensorFlow. These tests build the same metadata with TFDS's own classes (as preprocessing did
before) and compare the files, and check that the publish path really leaves TensorFlow unloaded.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from contract import schema
from preprocessing import stats_assembly, tfds_metadata

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 24


def _tfds_features(image_size, extra_columns, faces=False):
    """The records as a FeaturesDict of TFDS objects, nested by the '/' in each key."""
    text = tfds.features.Text
    scalar = tfds.features.Tensor
    features = {
        "image": tfds.features.FeaturesDict({
            "encoded": tfds.features.Image(shape=(image_size, image_size, 3),
                                           encoding_format="jpeg"),
            "height": scalar(shape=(), dtype=tf.int64),
            "width": scalar(shape=(), dtype=tf.int64),
            "original_height": scalar(shape=(), dtype=tf.int64),
            "original_width": scalar(shape=(), dtype=tf.int64),
            "filename": text(),
        }),
        "age": scalar(shape=(), dtype=tf.float32),
        "id": text(),
        "quality": tfds.features.FeaturesDict({
            "blur": scalar(shape=(), dtype=tf.float32),
            "brightness": scalar(shape=(), dtype=tf.float32),
        }),
    }
    if extra_columns:
        features["extra"] = tfds.features.FeaturesDict({name: text() for name in extra_columns})
    if faces:  # --face=detect|align records
        features["face"] = tfds.features.FeaturesDict({
            "box": scalar(shape=(4,), dtype=tf.float32),
            "landmarks": scalar(shape=(5, 2), dtype=tf.float32),
            "score": scalar(shape=(), dtype=tf.float32)})
    return tfds.features.FeaturesDict(features)


def _tfds_write_metadata(output_dir, stats, image_size, extra_columns):
    """What TFDS's DatasetInfo.write_to_directory writes for these splits."""
    template = tfds.core.ShardedFileTemplate(data_dir=output_dir,
                                             template=schema.FILENAME_TEMPLATE,
                                             dataset_name="face_age", filetype_suffix="tfrecord")
    info = tfds.core.DatasetInfo(
        builder=tfds.core.DatasetIdentity(name="face_age", version=tfds.core.Version("1.0.0"),
                                          data_dir=output_dir, module_name=""),
        features=_tfds_features(image_size, extra_columns),
        description="Face images with age labels, written by preprocessing.run.",
    )
    info.set_file_format(tfds.core.FileFormat.TFRECORD)
    info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=name, shard_lengths=s["shard_lengths"],
                            num_bytes=s["num_bytes"], filename_template=template)
        for name, s in stats["splits"].items() if s["count"]]))
    info.write_to_directory(output_dir)


def _stats():
    # Splits in the pipeline's order (not sorted), an empty split (left out of the metadata),
    # a multi-digit byte count and a shard that hashing left empty.
    shards = [stats_assembly.shard_summary("train", 0, 2, [20.0, 31.5, 44.0], 123456, max_age=100),
              stats_assembly.shard_summary("train", 1, 2, [], 0, max_age=100),
              stats_assembly.shard_summary("test", 0, 1, [50.0], 987, max_age=100)]
    return {"splits": stats_assembly.split_stats(shards, max_age=100)}


def _json(path):
    return json.loads(Path(path).read_text())


@pytest.mark.parametrize("extra_columns", [[], ["gender", "apparent_age_avg", "a/b"]])
def test_features_json_is_what_tfds_writes(tmp_path, extra_columns):
    _tfds_features(IMAGE_SIZE, extra_columns).save_config(str(tmp_path))
    assert schema.tfds_features_json(IMAGE_SIZE, extra_columns) == _json(
        tmp_path / "features.json")


def test_features_json_with_faces_is_what_tfds_writes(tmp_path):
    _tfds_features(IMAGE_SIZE, ["gender"], faces=True).save_config(str(tmp_path))
    assert schema.tfds_features_json(IMAGE_SIZE, ["gender"], faces=True) == _json(
        tmp_path / "features.json")


def test_dataset_info_json_is_what_tfds_writes(tmp_path):
    stats = _stats()
    assert list(stats["splits"]) == ["train", "validation", "test"]
    ours, theirs = tmp_path / "ours", tmp_path / "tfds"
    ours.mkdir()
    theirs.mkdir()
    assert tfds_metadata.write_tfds_metadata(str(ours), stats, IMAGE_SIZE, ["gender"]) == "written"
    _tfds_write_metadata(str(theirs), stats, IMAGE_SIZE, ["gender"])
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs)) == [
        "dataset_info.json", "features.json"]
    info = _json(ours / "dataset_info.json")
    assert info == _json(theirs / "dataset_info.json")
    assert [(s["name"], s["shardLengths"], s["numBytes"]) for s in info["splits"]] == [
        ("train", ["3", "0"], "123456"), ("test", ["1"], "987")]
    assert _json(ours / "features.json") == _json(theirs / "features.json")


def test_an_output_without_records_gets_no_metadata(tmp_path):
    stats = {"splits": {name: {"count": 0, "shard_lengths": [0], "num_bytes": 0}
                        for name in schema.SPLITS}}
    assert tfds_metadata.write_tfds_metadata(str(tmp_path), stats, IMAGE_SIZE, []) == (
        "skipped: no records")
    assert os.listdir(tmp_path) == []


_PUBLISH_WITHOUT_TF = """
import json, sys
from preprocessing import fake_records, publish
out = sys.argv[1]
staging = out + "/" + publish.STAGING_DIR
fake_records.write_dataset(staging, image_size={size}, counts={{"train": 5, "test": 2}}, shards=2)
stats = publish.publish(staging, out, {size}, [])
print(json.dumps({{"tfds_metadata": stats.tfds_metadata,
                  "tf_modules": sorted(m for m in sys.modules if m.startswith("tensorflow"))}}))
"""


def test_publish_writes_metadata_tfds_loads_without_importing_tensorflow(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _PUBLISH_WITHOUT_TF.format(size=IMAGE_SIZE), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"tfds_metadata": "written", "tf_modules": []}

    builder = tfds.builder_from_directory(str(out))
    assert {name: split.num_examples for name, split in builder.info.splits.items()} == {
        "train": 5, "test": 2}
    examples = list(builder.as_dataset(split="train"))
    assert len(examples) == 5
    assert examples[0]["image"]["encoded"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert sorted(e["id"].numpy() for e in examples) == [f"train-{i}".encode() for i in range(5)]
