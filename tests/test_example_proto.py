"""The plain-Python Example encoder against TensorFlow's own deterministic serialisation."""

import numpy as np
import pytest
import tensorflow as tf

from contract import example_proto, schema
from contract.example_proto import BYTES, FLOAT


def _tf_bytes(features):
    def feature(kind, values):
        if kind == BYTES:
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == FLOAT:
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    example = tf.train.Example(features=tf.train.Features(
        feature={k: feature(*v) for k, v in features.items()}))
    return example.SerializeToString(deterministic=True)


@pytest.mark.parametrize("seed", range(20))
def test_random_examples_match_tensorflow_byte_for_byte(seed):
    rng = np.random.default_rng(seed)
    features = {}
    for i in range(int(rng.integers(1, 12))):
        name = "".join(rng.choice(list("ab/_xyzé"), int(rng.integers(1, 8)))) + str(i)
        kind = int(rng.integers(1, 4))
        n = int(rng.integers(0, 4))
        if kind == BYTES:
            values = [rng.bytes(int(rng.integers(0, 300))) for _ in range(n)]
        elif kind == FLOAT:
            values = [float(np.float32(v)) for v in rng.normal(0, 1e3, n)]
        else:
            values = [int(v) for v in rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)]
        features[name] = (kind, values)
    assert example_proto.serialize_example(features) == _tf_bytes(features)


def test_a_face_record_parses_back_with_the_schema():
    record = {schema.IMAGE: b"\xff\xd8jpeg", schema.HEIGHT: 64, schema.WIDTH: 64,
              schema.ORIGINAL_HEIGHT: 200, schema.ORIGINAL_WIDTH: 180,
              schema.FILENAME: "face é.jpg", schema.AGE: 37.5, schema.ID: "ab12",
              schema.BLUR: 123.25, schema.BRIGHTNESS: 0.5, "extra": {"gender": 1}}
    parsed = schema.parse(tf.constant(schema.encode(record, ["gender", "race"])),
                          ["gender", "race"])
    assert parsed[schema.IMAGE].numpy() == b"\xff\xd8jpeg"
    assert parsed[schema.FILENAME].numpy().decode() == "face é.jpg"
    assert int(parsed[schema.ORIGINAL_WIDTH]) == 180
    assert float(parsed[schema.AGE]) == 37.5
    assert parsed[schema.extra_key("gender")].numpy() == b"1"
    assert parsed[schema.extra_key("race")].numpy() == b""


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="kind"):
        example_proto.serialize_example({"a": (7, [1])})
