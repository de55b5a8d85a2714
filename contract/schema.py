"""The one record schema shared by the Beam writer and the tf.data reader.

Every face becomes one ``tf.train.Example``. The feature names, dtypes and defaults live here
and nowhere else: ``encode`` is what preprocessing writes, ``parse`` is what the trainer reads,
and ``tfds_features_json`` describes the same bytes to TFDS (the features.json that
``tfds.builder_from_directory(output_dir)`` reads to load the splits). Write-then-read tests pin
all three to each other, and the JSON to what TFDS itself writes.

Extra label columns (gender, race, a subject id, APPA-REAL's apparent age, ...) are carried
generically as strings under ``extra/<name>``; the list of names for a data set is stored in
its metadata (``extra_columns`` in stats.json) so the reader knows which keys to expect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from contract import stats

# Feature keys. Slashes nest in TFDS (``image/encoded`` is ``features["image"]["encoded"]``).
IMAGE = "image/encoded"
HEIGHT = "image/height"
WIDTH = "image/width"
ORIGINAL_HEIGHT = "image/original_height"
ORIGINAL_WIDTH = "image/original_width"
FILENAME = "image/filename"
AGE = "age"
ID = "id"
BLUR = "quality/blur"
BRIGHTNESS = "quality/brightness"
EXTRA_PREFIX = "extra/"
# The face a --face=detect|align record was cut from, in the photo's pixels after EXIF
# orientation: box x1,y1,x2,y2, landmarks x,y per imaging.faces.LANDMARKS, the detector's score.
# Written only by those runs (stats.json "faces" says so), so --face=none records are unchanged.
FACE_BOX = "face/box"
FACE_LANDMARKS = "face/landmarks"
FACE_SCORE = "face/score"

# Label column names an extra column may not take: the trainer hands extras to evaluation next
# to the record's metadata (trainer.data: id, filename, blur, brightness), and predictions.csv
# puts them beside its own columns (id, file, true_age, predicted_age, blur, brightness and,
# for records with faces, face_score). Preprocessing refuses them before any image is read,
# rather than the trainer after hours.
RESERVED_COLUMNS = ("blur", "brightness", "face_score", "file", "filename", "id",
                    "predicted_age", "true_age")

SPLITS = ("train", "validation", "test")
# Shards are OUT/{split}-00000-of-00004; TFDS is told the same template in its metadata.
FILENAME_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}"
SHARD_GLOB = "{split}-*-of-*"
STATS_FILE = stats.FILE
ERRORS_DIR = "errors"

# Every core key and how it is stored: the one table that encode, feature_spec and
# tfds_features_json follow.
_KIND = {IMAGE: "bytes", HEIGHT: "int64", WIDTH: "int64", ORIGINAL_HEIGHT: "int64",
         ORIGINAL_WIDTH: "int64", FILENAME: "bytes", AGE: "float", ID: "bytes", BLUR: "float",
         BRIGHTNESS: "float"}
CORE_KEYS = tuple(_KIND)
# The optional face keys: all floats, by shape (the Example holds them flattened).
_FACE_SHAPE = {FACE_BOX: (4,), FACE_LANDMARKS: (5, 2), FACE_SCORE: ()}
FACE_KEYS = tuple(_FACE_SHAPE)


def extra_key(name: str) -> str:
    return EXTRA_PREFIX + name


def encode(record: Mapping[str, Any], extra_columns: Sequence[str] = ()) -> bytes:
    """Serialises one face record (keys as above; extras by column name) to Example bytes.

    Every extra column is written for every record (empty string when missing) because the
    reader parses fixed-length features and TFDS requires each declared feature.
    """
    # Plain-Python wire format: no TensorFlow import on the Beam workers (example_proto.py).
    from contract.example_proto import BYTES, FLOAT, INT64, serialize_example

    feature = {}
    for key in CORE_KEYS:
        if key not in record:
            raise KeyError(f"record for {record.get(FILENAME, '?')!r} lacks schema field {key!r}")
        value, kind = record[key], _KIND[key]
        if kind == "bytes":
            value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            feature[key] = (BYTES, [value])
        elif kind == "int64":
            feature[key] = (INT64, [int(value)])
        else:
            feature[key] = (FLOAT, [float(value)])
    feature.update(_face_features(record))
    extras = record.get("extra", {}) or {}
    for name in extra_columns:
        text = "" if extras.get(name) is None else str(extras[name])
        feature[extra_key(name)] = (BYTES, [text.encode("utf-8")])
    # Deterministic (sorted keys): the same inputs give byte-identical shards from any process.
    return serialize_example(feature)


def _face_features(record: Mapping[str, Any]) -> dict:
    """The face keys of a record that has them (all three, or none)."""
    from contract.example_proto import FLOAT

    present = [key for key in FACE_KEYS if record.get(key) is not None]
    if not present:
        return {}
    if len(present) != len(FACE_KEYS):
        raise KeyError(f"record for {record.get(FILENAME, '?')!r} has {present} but not all of "
                       f"{list(FACE_KEYS)}")
    out = {}
    for key, shape in _FACE_SHAPE.items():
        values = [float(v) for v in _flat(record[key])]
        if len(values) != math.prod(shape):
            raise ValueError(f"record for {record.get(FILENAME, '?')!r}: {key} holds "
                             f"{len(values)} numbers, expected shape {list(shape)}")
        out[key] = (FLOAT, values)
    return out


def _flat(value) -> list:
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    return [value]


def feature_spec(extra_columns: Sequence[str] = (), faces: bool = False) -> dict:
    """The ``tf.io.parse_example`` spec for records written by ``encode``; ``faces`` adds the
    face keys (records of a --face=detect|align run: stats.json's ``faces``)."""
    import tensorflow as tf

    dtypes = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    spec = {key: tf.io.FixedLenFeature([], dtypes[kind]) for key, kind in _KIND.items()}
    if faces:
        spec.update({key: tf.io.FixedLenFeature(list(shape), tf.float32)
                     for key, shape in _FACE_SHAPE.items()})
    for name in extra_columns:
        spec[extra_key(name)] = tf.io.FixedLenFeature([], tf.string, default_value="")
    return spec


def parse(serialized, extra_columns: Sequence[str] = (), faces: bool = False) -> dict:
    """Parses a scalar or a batch of serialised Examples into a flat dict of tensors.

    The image stays encoded: decoding belongs to the input pipeline, after shuffling and
    caching decisions (decoded images are ~10x larger than JPEG bytes).
    """
    import tensorflow as tf

    spec = feature_spec(extra_columns, faces)
    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, spec)
    return tf.io.parse_example(serialized, spec)


# features.json as TFDS 4.9 writes it (FeatureConnector.save_config) for these records. Written as
# plain JSON so that publishing the metadata needs no TensorFlow; tests/test_tfds_metadata.py pins
# it to what tfds.features writes for the same FeaturesDict.
_TFDS_CLASS = "tensorflow_datasets.core.features."
_TFDS_DTYPE = {"int64": "int64", "float": "float32"}


def _tfds_leaf(key: str, kind: str, image_size: int, shape: tuple = ()) -> dict:
    if key == IMAGE:  # the one bytes feature that is not text: TFDS decodes it to uint8 pixels
        return {"pythonClassName": _TFDS_CLASS + "image_feature.Image",
                "image": {"shape": {"dimensions": [str(image_size), str(image_size), "3"]},
                          "dtype": "uint8", "encodingFormat": "jpeg"}}
    if kind == "bytes":
        return {"pythonClassName": _TFDS_CLASS + "text_feature.Text", "text": {}}
    return {"pythonClassName": _TFDS_CLASS + "tensor_feature.Tensor",
            "tensor": {"shape": {"dimensions": [str(n) for n in shape]} if shape else {},
                       "dtype": _TFDS_DTYPE[kind], "encoding": "none"}}


def _tfds_features_dict(features: dict) -> dict:
    return {"pythonClassName": _TFDS_CLASS + "features_dict.FeaturesDict",
            "featuresDict": {"features": features}}


def tfds_features_json(image_size: int, extra_columns: Sequence[str] = (),
                       faces: bool = False) -> dict:
    """features.json for these records: a TFDS FeaturesDict, nested at the first "/" of a key."""
    leaves = {key: _tfds_leaf(key, kind, image_size) for key, kind in _KIND.items()}
    if faces:
        leaves.update({key: _tfds_leaf(key, "float", image_size, shape)
                       for key, shape in _FACE_SHAPE.items()})
    leaves.update({extra_key(name): _tfds_leaf(extra_key(name), "bytes", image_size)
                   for name in extra_columns})
    # One level of nesting, at the first '/': an extra column named "a/b" stays one feature
    # under "extra", as it does in a FeaturesDict built from {name: Text()}.
    features: dict = {}
    groups: dict = {}
    for key, leaf in leaves.items():
        head, slash, rest = key.partition("/")
        if slash:
            groups.setdefault(head, {})[rest] = leaf
        else:
            features[key] = leaf
    features.update({head: _tfds_features_dict(group) for head, group in groups.items()})
    return _tfds_features_dict(features)


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}"
