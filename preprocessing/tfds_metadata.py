"""TFDS metadata next to the shards, so that ``tfds.builder_from_directory(OUT)`` loads them.

Written as plain JSON, without TensorFlow or TFDS: the Beam job must not import them.
"""

from __future__ import annotations

from contract import files, schema
from contract.files import join

DATASET_INFO, FEATURES = FILES = ("dataset_info.json", "features.json")


def write_tfds_metadata(output_dir: str, stats: dict, image_size: int, extra_columns) -> str:
    """dataset_info.json + features.json so that tfds.builder_from_directory(OUT) loads it.

    Both are written as plain JSON through contract.files: no TensorFlow import, and OUT may be
    gs:// (TFDS writes through tf.io.gfile, whose GCS client ignores STORAGE_EMULATOR_HOST).
    tests/test_tfds_metadata.py pins both files to what TFDS writes.
    """
    if not any(s["count"] for s in stats["splits"].values()):
        return "skipped: no records"
    # tfds.folder_dataset.write_metadata would be the one-liner here, but TFDS 4.9 infers the
    # file format from a ".tfrecord" part of the shard names, and schema.FILENAME_TEMPLATE
    # ("{SPLIT}-{SHARD_X_OF_Y}") has none, so it raises "Unrecognized file extension"; it would
    # also bring back the TensorFlow import and tf.io.gfile. These are the two files its
    # DatasetInfo.write_to_directory writes, with the format stated instead of inferred:
    # dataset_info.json is the DatasetInfo proto as JSON, in which int64 fields (numBytes,
    # shardLengths) are strings.
    info = {
        "name": "face_age",
        "version": "1.0.0",
        "description": "Face images with age labels, written by preprocessing.run.",
        "fileFormat": "tfrecord",
        "splits": [{"name": name, "filepathTemplate": schema.FILENAME_TEMPLATE,
                    "numBytes": str(s["num_bytes"]),
                    "shardLengths": [str(n) for n in s["shard_lengths"]]}
                   for name, s in stats["splits"].items() if s["count"]],
    }
    files.write_json(join(output_dir, FEATURES),
                     schema.tfds_features_json(image_size, extra_columns,
                                               bool(stats.get("faces"))))
    files.write_json(join(output_dir, DATASET_INFO), info)
    return "written"
