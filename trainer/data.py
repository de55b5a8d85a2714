"""The trainer's tf.data input pipeline: preprocessing's TFRecord shards -> batches of faces.

``build_dataset`` is one straight-line function; each step's comment says why it sits where it
does. The record layout comes from ``contract.schema`` (never redefined here), the per-image
work lives in small pure functions (``decode_image``, ``lookup_weights``, ``to_batch``) that
tests call eagerly, and augmentation lives in ``trainer.augment``.

Images leave the pipeline as float32 in 0..255: the backbone's own input preprocessing is a layer
of the Keras model, so the exported model (which takes image bytes) cannot drift from training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from contract import limits, schema
from contract import stats as stats_file
from contract.stats import Stats
from trainer import shards
from trainer.augment import AugmentConfig, augment_batch

# Keys of the metadata dict produced with with_metadata=True (extra columns are added by name).
META_KEYS = {"id": schema.ID, "filename": schema.FILENAME, "blur": schema.BLUR,
             "brightness": schema.BRIGHTNESS}
# Added to the metadata when the records carry faces (stats.json "faces"): the detector's score.
FACE_SCORE_KEY = "face_score"

# Files read at once by the interleave. More files in flight hide per-file latency on gs://;
# each open TFRecord reader holds a read buffer, so there is little point going much higher.
_CYCLE_LENGTH = 16
_READ_BUFFER_BYTES = 1 << 20  # 1 MiB per reader: fewer, larger reads from a bucket


def list_files(data_dir: str, split: str) -> list[str]:
    """The shards of `split` under `data_dir` (local or gs://), sorted, checked against
    stats.json (shards.check_files: none missing or foreign, sizes as listed)."""
    return checked_files(data_dir, split)[0]


def checked_files(data_dir: str, split: str, stats: Stats | None = None
                  ) -> tuple[list[str], list[int]]:
    """(sorted shard paths, records stats.json lists per shard or -1); ShardError when the
    files disagree with stats.json. stats.json is required: it is written last, so an output
    without it is incomplete (preprocessing.publish)."""
    pattern = schema.SHARD_GLOB.format(split=split)
    path = data_dir.rstrip("/") + "/" + pattern
    try:
        files = tf.io.gfile.glob(path)
    except tf.errors.NotFoundError:  # some file systems raise instead of returning nothing
        files = []
    if not files:
        hint = ("the directory does not exist" if not tf.io.gfile.isdir(data_dir)
                else "is it the output_dir of preprocessing.run, and is the split name right "
                     f"(one of {', '.join(schema.SPLITS)})?")
        raise FileNotFoundError(
            f"no {split!r} shards in {data_dir!r}: nothing matches the pattern {pattern!r} "
            f"({path}); {hint}")
    files = sorted(files)
    stats = stats_file.read(data_dir) if stats is None else stats
    return files, shards.check_files(data_dir, split, files, stats)


def decode_image(encoded, image_size: int, stored_size: int = 0, name=""):
    """JPEG bytes -> uint8 [image_size, image_size, 3].

    The JPEG header is checked before decoding, so memory stays bounded whatever a record
    holds: it must be stored_size square (stats.json's image_size) when that is known, else
    within contract.limits. Preprocessing wrote every record at stored_size, so the resize only
    runs when the trainer asks for another size (or, when stored_size is unknown, inside a
    tf.cond for images of another size). The image stays uint8 until augmentation has resampled
    it: a quarter of the bytes to move.
    """
    header = tf.io.extract_jpeg_shape(encoded, output_type=tf.int64)
    height, width = header[0], header[1]
    if stored_size:
        ok = tf.reduce_all(tf.equal(header[:2], stored_size))
        rule = f"the records are {stored_size}x{stored_size} ({schema.STATS_FILE} image_size)"
    else:
        ok = tf.logical_and(height * width <= limits.MAX_PIXELS, tf.maximum(height, width)
                            <= tf.cast(limits.MAX_ASPECT_RATIO, tf.int64)
                            * tf.minimum(height, width))
        rule = (f"limits: {limits.MAX_PIXELS} pixels, aspect ratio "
                f"{limits.MAX_ASPECT_RATIO:g}")
    # The raw op with raw parts, joined only if it fails (shards.clean_error): the wrapper
    # tf.debugging.Assert adds a cond per image, which cost a tenth of the pipeline's CPU time.
    check = tf.raw_ops.Assert(condition=ok, data=[shards.BAD_RECORD, name,
                                                  "its JPEG header declares", width, "x", height,
                                                  "pixels (width x height);", rule])
    with tf.control_dependencies([check]):
        image = tf.io.decode_jpeg(encoded, channels=3)
    if stored_size == image_size:  # the size is known to match: no per-image test at all
        return tf.ensure_shape(image, [image_size, image_size, 3])
    shape = tf.shape(image)
    image = tf.cond(
        tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size)),
        lambda: image,
        lambda: tf.cast(tf.round(tf.clip_by_value(  # antialiasing may overshoot 0..255
            tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True),
            0.0, 255.0)), tf.uint8))
    return tf.ensure_shape(image, [image_size, image_size, 3])


def check_age_weights(age_weights) -> np.ndarray:
    """Validates a per-age weight table (index = floor(age)) and returns it as float32."""
    table = np.asarray(age_weights, dtype=np.float32)
    if table.ndim != 1 or table.size == 0:
        raise ValueError(f"age_weights must be a non-empty 1-D array indexed by floor(age), got "
                         f"shape {table.shape}")
    if not np.all(np.isfinite(table)) or np.any(table < 0):
        raise ValueError("age_weights must be finite and non-negative; got min "
                         f"{np.nanmin(table)}, max {np.nanmax(table)}")
    return table


def lookup_weights(age, table):
    """Per-example weights: table[floor(age)], the index clipped to the table's range."""
    table = tf.convert_to_tensor(table, tf.float32)
    index = tf.cast(tf.floor(age), tf.int32)
    index = tf.clip_by_value(index, 0, tf.shape(table)[0] - 1)
    return tf.gather(table, index)


def to_batch(features, *, image_size: int, age_weights=None,
             extra_columns: Sequence[str] = (), with_metadata: bool = False,
             stored_size: int = 0):
    """A parsed batch (schema.parse of [B] records) -> (uint8 images [B,S,S,3], ages [B],
    weights [B] | meta dict). stored_size: see decode_image."""
    # JPEG decoding takes one image at a time.
    image = tf.map_fn(lambda e: decode_image(e[0], image_size, stored_size, e[1]),
                      (features[schema.IMAGE], features[schema.FILENAME]),
                      fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))
    age = tf.cast(features[schema.AGE], tf.float32)
    if with_metadata:
        meta = {name: features[key] for name, key in META_KEYS.items()}
        if schema.FACE_SCORE in features:
            meta[FACE_SCORE_KEY] = features[schema.FACE_SCORE]
        meta.update({name: features[schema.extra_key(name)] for name in extra_columns})
        return image, age, meta
    weight = (tf.ones_like(age) if age_weights is None else lookup_weights(age, age_weights))
    return image, age, weight


def finish_batch(images, seed, augment: AugmentConfig | None):
    """A uint8 batch -> float32 0..255, augmented when `augment` is given."""
    if augment is None:
        return tf.cast(images, tf.float32)
    return augment_batch(images, seed, augment)


def build_dataset(data_dir: str, split: str, *, batch_size: int, image_size: int, training: bool,
                  extra_columns: Sequence[str] = (), augment: AugmentConfig | None = None,
                  age_weights=None, cache: bool | str = False, shuffle_buffer: int = 2048,
                  seed: int = 0, deterministic: bool = False, repeat: int | None = None,
                  input_context: tf.distribute.InputContext | None = None,
                  with_metadata: bool = False) -> tf.data.Dataset:
    """Batches of (image [B,S,S,3] f32 0..255, age [B] f32, weight [B] f32 | meta dict).

    batch_size: THIS pipeline's (with input_context, the per-replica batch). augment: when
    training only. cache: False, True (memory) or a file prefix, of the encoded records.
    repeat: epochs (-1: forever); None: forever when training, else once. deterministic: fixed
    order (and so augmentation) at some speed cost; evaluation is always in a fixed order.
    input_context: from distribute_datasets_from_function; the files are split between
    pipelines. with_metadata: (image, age, meta), meta = id, filename, blur, brightness, extras.
    """
    _check_args(batch_size=batch_size, image_size=image_size, shuffle_buffer=shuffle_buffer,
                repeat=repeat, extra_columns=extra_columns)
    table = None if age_weights is None else check_age_weights(age_weights)
    stats = stats_file.read(data_dir)
    files, counts = checked_files(data_dir, split, stats)
    stored_size = stats.image_size
    num_pipelines, pipeline_id = 1, 0
    if input_context is not None:
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
        if len(files) < num_pipelines:
            raise ValueError(
                f"{len(files)} {split!r} shard(s) in {data_dir!r} cannot feed {num_pipelines} "
                f"input pipelines (one per worker): each needs at least one file. Re-run "
                f"preprocessing with at least {num_pipelines} shards per split.")
    # Every pipeline draws different shuffles and augmentations but repeats across runs.
    base_seed = tf.constant([seed, pipeline_id], tf.int64)

    ds = tf.data.Dataset.from_tensor_slices((files, counts))
    # Shard by FILE before anything reorders the list: the sorted list is identical on every
    # worker, so the shards are disjoint and together cover every file, and no worker reads (and
    # discards) the others' records as sharding after the interleave would.
    if num_pipelines > 1:
        ds = ds.shard(num_pipelines, pipeline_id)
    # Shuffle the file order (training only): the record shuffle buffer below only mixes nearby
    # records, so without this every epoch would start from the same shards.
    if training:
        ds = ds.shuffle(len(files), seed=seed + 1_000_003 * pipeline_id,
                        reshuffle_each_iteration=True)
    # Read several files at once: parallel I/O hides read latency (especially on gs://) and the
    # round-robin mixes records from different shards. Each file's records are counted as they
    # pass (shards.read_chunks) whenever stats.json lists them: a short, corrupted or foreign
    # shard is then an error naming it, every epoch, at a cost within the benchmark's noise.
    # The interleave then hands out chunks of 32 records of one file (1/32 of the elements to
    # pass it); the record shuffle below mixes chunks of different files again.
    checked = all(n >= 0 for n in counts)
    ds = ds.interleave(
        lambda f, n: shards.read_chunks(f, n, _READ_BUFFER_BYTES, checked),
        cycle_length=min(_CYCLE_LENGTH, len(files)), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.unbatch()
    # Cache the ENCODED records, before shuffle/repeat/decode: JPEG bytes are ~10x smaller than
    # decoded images, and every epoch must still get a fresh shuffle and fresh augmentation.
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    # Shuffle records (training only), before repeat so that epoch boundaries stay intact (every
    # record seen once per epoch) and before batching so batches mix ages: UTKFace-style inputs
    # are sorted by age, and batch statistics must not see one age per batch.
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed + 7_919 * pipeline_id,
                        reshuffle_each_iteration=True)
    # Repeat after the shuffle: Keras steps_per_epoch then decides the epoch length.
    epochs = (-1 if training else 1) if repeat is None else repeat
    if epochs != 1:
        ds = ds.repeat(None if epochs < 0 else epochs)

    def parse_and_decode(serialized):
        features = schema.parse(serialized, extra_columns, faces=stats.faces is not None)
        return to_batch(features, image_size=image_size, age_weights=table,
                        extra_columns=extra_columns, with_metadata=with_metadata,
                        stored_size=stored_size)

    # Batch the encoded records, then parse and decode whole batches, several in parallel:
    # parse_example over a batch cost 0.014 CPU-ms per record where parse_single_example cost
    # 0.057, and parse + decode went from 0.14 to 0.10 (96 px). After the shuffle, so the shuffle
    # buffer holds small encoded records. drop_remainder when training so every step (and every
    # replica) sees the same static shape: no retracing, and MirroredStrategy never receives a
    # ragged last batch. Images stay uint8 until augmentation: a quarter of the bytes to move.
    ds = ds.batch(batch_size, drop_remainder=training)
    ds = ds.map(parse_and_decode, num_parallel_calls=tf.data.AUTOTUNE)
    # Augment whole batches (training only), each image with its own parameters: the few dozen
    # small ops of an augmentation then pay their dispatch overhead once per batch, not per image
    # (measured: -20% CPU for AugmentConfig.default(), -55% for the colour jitter alone; the
    # bilinear resampling is most of what remains). Batches are numbered after repeat, so
    # every batch of every epoch gets its own seed fold_in(base_seed, index); with
    # deterministic=True the order, and hence every augmented image, repeats from run to run.
    augment = augment if training and augment is not None and not augment.is_identity else None

    def to_float_and_augment(index, batch):
        images, age, third = batch
        seed_of_batch = tf.random.experimental.stateless_fold_in(base_seed, index)
        return finish_batch(images, seed_of_batch, augment), age, third

    ds = ds.enumerate().map(to_float_and_augment, num_parallel_calls=tf.data.AUTOTUNE)
    # Overlap input preparation with the training step.
    ds = ds.prefetch(tf.data.AUTOTUNE)

    options = tf.data.Options()
    # Non-deterministic order lets parallel interleave/map hand out whichever element is ready
    # first (faster); evaluation keeps a fixed order so predictions files are stable.
    options.deterministic = bool(deterministic or not training)
    return ds.with_options(options)


def _check_args(*, batch_size, image_size, shuffle_buffer, repeat, extra_columns):
    for name, value in (("batch_size", batch_size), ("image_size", image_size),
                        ("shuffle_buffer", shuffle_buffer)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if repeat is not None and (not isinstance(repeat, (int, np.integer)) or repeat == 0
                               or repeat < -1):
        raise ValueError(f"repeat must be None, -1 (forever) or a number of epochs >= 1, "
                         f"got {repeat!r}")
    clashes = sorted(set(extra_columns) & {*META_KEYS, FACE_SCORE_KEY})
    if clashes:
        raise ValueError(f"extra column name(s) {clashes} clash with metadata keys "
                         f"{sorted({*META_KEYS, FACE_SCORE_KEY})}; rename them in preprocessing")
