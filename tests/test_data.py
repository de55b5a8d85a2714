"""trainer.data: tiny TFRecord shards written with contract.schema.encode, read back."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contract import schema
from trainer import data
from trainer.augment import AugmentConfig

SIZE = 32
NUM_SHARDS = 4
PER_SHARD = 6
EXTRA = ("gender",)


def _jpeg(value: int, size: int = SIZE) -> bytes:
    """A JPEG whose left half is `value` and right half dark: decodable, flip-visible."""
    pixels = np.zeros([size, size, 3], np.uint8)
    pixels[:, : size // 2] = value
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _write_split(out_dir, split, num_shards, per_shard, size=SIZE):
    """Record i has age 2.5 * i + 0.7, file name face_{i}.jpg, gender m/f alternating."""
    names = []
    for shard in range(num_shards):
        with tf.io.TFRecordWriter(str(out_dir / schema.shard_name(split, shard, num_shards))) as w:
            for j in range(per_shard):
                i = shard * per_shard + j
                names.append(f"face_{i}.jpg")
                w.write(schema.encode({
                    schema.IMAGE: _jpeg(40 + 8 * i, size), schema.HEIGHT: size,
                    schema.WIDTH: size, schema.ORIGINAL_HEIGHT: 200, schema.ORIGINAL_WIDTH: 200,
                    schema.FILENAME: names[-1], schema.AGE: 2.5 * i + 0.7, schema.ID: f"id{i}",
                    schema.BLUR: float(i), schema.BRIGHTNESS: 100.0 + i,
                    "extra": {"gender": "mf"[i % 2]}}, EXTRA))
    return names


def _index(name: bytes) -> int:
    return int(name.decode().removeprefix("face_").removesuffix(".jpg"))


def _age_of(name: bytes) -> float:
    return 2.5 * _index(name) + 0.7


def _write_stats(out_dir, layout, size=SIZE):
    """stats.json for shards written by _write_split: layout = {split: (shards, per_shard)}."""
    splits = {}
    for split, (num_shards, per_shard) in layout.items():
        paths = [out_dir / schema.shard_name(split, i, num_shards) for i in range(num_shards)]
        splits[split] = {"count": num_shards * per_shard, "num_shards": num_shards,
                         "shard_lengths": [per_shard] * num_shards,
                         "num_bytes": sum(p.stat().st_size for p in paths)}
    (out_dir / schema.STATS_FILE).write_text(json.dumps({"image_size": size, "splits": splits}))


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    _write_split(out, "train", NUM_SHARDS, PER_SHARD)
    _write_split(out, "validation", 1, 5)
    _write_stats(out, {"train": (NUM_SHARDS, PER_SHARD), "validation": (1, 5)})
    return out


def _build(out_dir, **kwargs):
    split = kwargs.pop("split", "train")
    args = dict(batch_size=4, image_size=SIZE, training=True, seed=1, extra_columns=EXTRA)
    args.update(kwargs)
    return data.build_dataset(str(out_dir), split, **args)


def test_list_files_sorted_and_clear_errors(out_dir, tmp_path):
    files = data.list_files(str(out_dir), "train")
    assert len(files) == NUM_SHARDS and files == sorted(files)
    assert data.list_files(str(out_dir) + "/", "validation")[0].endswith("-00000-of-00001")
    with pytest.raises(FileNotFoundError) as err:
        data.list_files(str(tmp_path), "train")  # exists, but empty
    assert str(tmp_path) in str(err.value) and "train-*-of-*" in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.list_files(str(tmp_path / "missing"), "train")
    with pytest.raises(FileNotFoundError, match="test-\\*-of-\\*"):
        data.build_dataset(str(out_dir), "test", batch_size=2, image_size=SIZE, training=False)


def test_training_batches_shapes_dtypes_and_ranges(out_dir):
    ds = _build(out_dir, augment=AugmentConfig.default())
    assert ds.element_spec[0].shape.as_list() == [4, SIZE, SIZE, 3]  # static: drop_remainder
    for images, ages, weights in ds.take(3):
        assert images.dtype == tf.float32 and ages.dtype == tf.float32
        assert weights.dtype == tf.float32
        assert ages.shape == [4] and weights.shape == [4]
        assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 255.0
        np.testing.assert_array_equal(weights.numpy(), np.ones(4))


def test_one_training_epoch_sees_every_record_once_in_full_batches(out_dir):
    ds = _build(out_dir, batch_size=5, repeat=1, with_metadata=True)
    names = [n for _, _, meta in ds for n in meta["filename"].numpy()]
    total = NUM_SHARDS * PER_SHARD
    assert len(names) == total // 5 * 5  # the remainder batch is dropped when training
    assert len(set(names)) == len(names)
    assert names != sorted(names, key=_age_of)  # shuffled, not in file order


def test_evaluation_reads_everything_in_order_with_metadata(out_dir):
    ds = _build(out_dir, training=False, with_metadata=True, batch_size=5)
    names, extras, ages = [], [], []
    for images, age, meta in ds:
        assert set(meta) == {"id", "filename", "blur", "brightness", "gender"}
        names += list(meta["filename"].numpy())
        extras += list(meta["gender"].numpy())
        ages += list(age.numpy())
        assert images.dtype == tf.float32
    assert len(names) == NUM_SHARDS * PER_SHARD  # remainder kept for evaluation
    np.testing.assert_allclose(ages, [_age_of(n) for n in names], rtol=1e-6)
    assert extras == ["mf"[_index(n) % 2].encode() for n in names]
    again = [n for _, _, m in _build(out_dir, training=False, with_metadata=True, batch_size=5)
             for n in m["filename"].numpy()]
    assert again == names  # fixed order: prediction files are stable


def test_eval_images_are_the_decoded_jpegs_and_resize_only_when_sizes_differ(out_dir):
    images, _, meta = next(iter(_build(out_dir, training=False, with_metadata=True)))
    index = _index(meta["filename"].numpy()[0])
    expected = tf.io.decode_jpeg(_jpeg(40 + 8 * index)).numpy().astype(np.float32)
    np.testing.assert_array_equal(images[0].numpy(), expected)
    bigger = _build(out_dir, training=False, image_size=48, batch_size=2)
    assert bigger.element_spec[0].shape.as_list() == [None, 48, 48, 3]
    images, _, _ = next(iter(bigger))
    assert images.shape == [2, 48, 48, 3]
    assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 255.0


def test_weights_looked_up_by_floor_of_age_and_clipped(out_dir):
    table = np.arange(30, dtype=np.float32) * 0.1 + 1.0  # ages >= 29 use the last entry
    ds = _build(out_dir, training=False, age_weights=table, batch_size=8)
    for _, ages, weights in ds:
        expected = table[np.clip(np.floor(ages.numpy()).astype(int), 0, len(table) - 1)]
        np.testing.assert_allclose(weights.numpy(), expected)
    direct = data.lookup_weights(tf.constant([-3.0, 0.0, 4.99, 5.0, 250.0]), table).numpy()
    np.testing.assert_allclose(direct, [1.0, 1.0, 1.4, 1.5, table[-1]])


@pytest.mark.parametrize("bad", [np.zeros([0]), np.ones([3, 3]), np.array([1.0, -1.0]),
                                 np.array([1.0, np.nan])])
def test_bad_age_weights_are_clear_errors(out_dir, bad):
    with pytest.raises(ValueError, match="age_weights"):
        _build(out_dir, age_weights=bad)


def test_input_context_shards_files_disjoint_and_covering(out_dir):
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        ds = _build(out_dir, training=False, with_metadata=True, input_context=context)
        seen.append({n for _, _, m in ds for n in m["filename"].numpy()})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == NUM_SHARDS * PER_SHARD
    # Whole files per pipeline: each gets exactly two shards' worth of records.
    assert len(seen[0]) == len(seen[1]) == 2 * PER_SHARD


def test_more_pipelines_than_files_is_a_clear_error(out_dir):
    context = tf.distribute.InputContext(num_input_pipelines=NUM_SHARDS + 1, input_pipeline_id=0)
    with pytest.raises(ValueError, match=f"{NUM_SHARDS} 'train' shard.*{NUM_SHARDS + 1} input"):
        _build(out_dir, input_context=context)


def _first_batches(ds, n=3):
    return [tuple(t.numpy() for t in batch) for batch in ds.take(n)]


def test_deterministic_runs_repeat_and_seeds_matter(out_dir):
    kwargs = dict(augment=AugmentConfig.default(), deterministic=True, shuffle_buffer=8)
    first = _first_batches(_build(out_dir, seed=5, **kwargs))
    second = _first_batches(_build(out_dir, seed=5, **kwargs))
    for a, b in zip(first, second, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    other = _first_batches(_build(out_dir, seed=6, **kwargs))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def test_augmentation_is_for_training_only_and_changes_the_images(out_dir):
    config = AugmentConfig(flip=True)  # mirrors the bright left half onto the right
    evaluation = _build(out_dir, training=False, augment=config, batch_size=24)
    images = next(iter(evaluation))[0].numpy()
    assert np.all(images[:, :, : SIZE // 2 - 2].mean(axis=(1, 2, 3)) > 30)  # never flipped
    training = _build(out_dir, augment=config, batch_size=24, repeat=1)
    images = next(iter(training))[0].numpy()
    left_dark = images[:, :, : SIZE // 2 - 2].mean(axis=(1, 2, 3)) < 10
    assert 0 < left_dark.sum() < 24  # some flipped, some not


def test_cache_keeps_content_and_every_epoch_is_reshuffled(out_dir, tmp_path):
    def epochs(**kwargs):
        ds = _build(out_dir, batch_size=4, repeat=2, with_metadata=True, **kwargs)
        return [n for _, _, m in ds for n in m["filename"].numpy()]

    plain = epochs()
    for cache in (True, str(tmp_path / "cache")):
        cached = epochs(cache=cache)
        assert sorted(cached) == sorted(plain)
        half = len(cached) // 2
        assert cached[:half] != cached[half:]  # the shuffle runs after the cache
    assert tf.io.gfile.glob(str(tmp_path / "cache") + "*")


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size"), (dict(image_size=-1), "image_size"),
    (dict(repeat=0), "repeat"), (dict(extra_columns=("filename",)), "clash"),
    (dict(shuffle_buffer=True), "shuffle_buffer")])
def test_bad_arguments_are_clear_errors(out_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build(out_dir, **kwargs)


def test_feeds_a_real_mirrored_strategy_per_replica(out_dir, mirrored_strategy):
    strategy = mirrored_strategy
    devices = strategy.extended.worker_devices
    global_batch = 8

    def dataset_fn(context):
        return data.build_dataset(
            str(out_dir), "train", batch_size=context.get_per_replica_batch_size(global_batch),
            image_size=SIZE, training=True, augment=AugmentConfig.default(), seed=2,
            input_context=context)

    dist = strategy.distribute_datasets_from_function(dataset_fn)
    images, ages, weights = next(iter(dist))
    per_replica = strategy.experimental_local_results(images)
    assert len(per_replica) == len(devices)
    assert all(t.shape == [global_batch // len(devices), SIZE, SIZE, 3] for t in per_replica)
    assert all(t.shape == [global_batch // len(devices)]
               for t in strategy.experimental_local_results(weights))
