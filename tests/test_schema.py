"""The one record schema: what encode writes, parse and the TFDS features read back identically."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contract import schema

EXTRAS = ["gender", "subject"]


def _record(age=33.5, extra=None):
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(buffer, format="JPEG")
    return {schema.IMAGE: buffer.getvalue(), schema.HEIGHT: 16, schema.WIDTH: 16,
            schema.ORIGINAL_HEIGHT: 200, schema.ORIGINAL_WIDTH: 180,
            schema.FILENAME: "faces/ö.jpg", schema.AGE: age, schema.ID: "ab12" * 8,
            schema.BLUR: 12.5, schema.BRIGHTNESS: 0.47,
            "extra": {"gender": "1", "subject": "p7"} if extra is None else extra}


def test_encode_then_parse_gives_back_every_field():
    record = _record()
    parsed = schema.parse(tf.constant(schema.encode(record, EXTRAS)), EXTRAS)
    assert parsed[schema.IMAGE].numpy() == record[schema.IMAGE]
    assert parsed[schema.FILENAME].numpy().decode() == "faces/ö.jpg"
    for key in (schema.HEIGHT, schema.WIDTH, schema.ORIGINAL_HEIGHT, schema.ORIGINAL_WIDTH):
        assert parsed[key].dtype == tf.int64 and parsed[key].numpy() == record[key]
    for key in (schema.AGE, schema.BLUR, schema.BRIGHTNESS):
        assert parsed[key].dtype == tf.float32
        assert parsed[key].numpy() == pytest.approx(record[key])
    assert parsed[schema.ID].numpy().decode() == record[schema.ID]
    assert parsed["extra/gender"].numpy() == b"1" and parsed["extra/subject"].numpy() == b"p7"


def test_parse_of_a_batch_and_missing_extras_become_empty_strings():
    batch = tf.constant([schema.encode(_record(age=a, extra={}), EXTRAS) for a in (1.0, 2.0)])
    parsed = schema.parse(batch, EXTRAS)
    assert parsed[schema.AGE].numpy().tolist() == [1.0, 2.0]
    assert parsed["extra/gender"].numpy().tolist() == [b"", b""]


def test_encode_names_the_missing_field():
    record = _record()
    del record[schema.AGE]
    with pytest.raises(KeyError, match="faces/ö.jpg.*'age'"):
        schema.encode(record, EXTRAS)


def test_encode_is_deterministic_bytes():
    assert schema.encode(_record(), EXTRAS) == schema.encode(_record(), EXTRAS)


def test_tfds_features_decode_what_encode_wrote_and_agree_with_parse():
    import tensorflow_datasets as tfds

    record = _record()
    serialized = schema.encode(record, EXTRAS)
    # The features TFDS builds from features.json, as tfds.builder_from_directory does.
    features = tfds.features.FeatureConnector.from_json(schema.tfds_features_json(16, EXTRAS))
    decoded = features.deserialize_example(tf.constant(serialized))
    parsed = schema.parse(tf.constant(serialized), EXTRAS)
    image = decoded["image"]["encoded"]
    assert image.shape == (16, 16, 3) and image.dtype == tf.uint8
    np.testing.assert_array_equal(image.numpy(), tf.io.decode_jpeg(parsed[schema.IMAGE]).numpy())
    assert decoded["age"].numpy() == parsed[schema.AGE].numpy()
    assert decoded["id"].numpy() == parsed[schema.ID].numpy()
    assert decoded["image"]["filename"].numpy() == parsed[schema.FILENAME].numpy()
    assert decoded["image"]["original_width"].numpy() == 180
    assert decoded["quality"]["blur"].numpy() == parsed[schema.BLUR].numpy()
    assert decoded["quality"]["brightness"].numpy() == parsed[schema.BRIGHTNESS].numpy()
    assert decoded["extra"]["subject"].numpy() == b"p7"


def test_shard_names_are_what_the_tfds_template_reads():
    import tensorflow_datasets as tfds

    name = schema.shard_name("train", 3, 16)
    assert name == "train-00003-of-00016"
    template = tfds.core.ShardedFileTemplate(data_dir="/out", template=schema.FILENAME_TEMPLATE)
    info = template.parse_filename_info(name)
    assert (info.split, info.shard_index, info.num_shards) == ("train", 3, 16)
