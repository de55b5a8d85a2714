"""The Beam graph: named composite transforms, and ``run`` which tests and run.py both call.

    ReadLabels -> RejectDuplicateFileNames -> LoadImages -> DropExactDuplicates -> AssignSplits
      -> WriteShards (staging) ; every stage's rejects -> WriteErrors ; counts -> WriteStats

Every stage returns (good, rejects): nothing is dropped silently. "Which records go to which
split and shard" (AssignSplits, pure functions in split.py) is kept apart from "one file -> one
record" (LoadImages, pure functions in images.py). Shards are written into OUT/.staging and only
moved into OUT by ``metadata.publish`` after the whole pipeline succeeded and wrote at least one
record (an all-rejected run leaves OUT as it was; its errors stay in OUT/.staging/errors/).
"""

from __future__ import annotations

import json
import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pvalue import AsDict, AsList, TaggedOutput

from preprocessing import images, labels, metadata, reasons, schema, split
from preprocessing.labels import rejection

NAMESPACE = "preprocessing"
REJECTS = "rejects"
MERGED = "merged"
_log = logging.getLogger(__name__)


class NoValidRecordsError(RuntimeError):
    """Every input was rejected: nothing to train on."""


def _counter(name: str):
    return Metrics.counter(NAMESPACE, name)


class _ReadSource(beam.DoFn):
    def __init__(self, max_age: float):
        self.max_age = max_age
        self.read = _counter("read")

    def process(self, unit):
        try:
            rows, rejects = labels.read_source(unit, self.max_age)
        except labels.LabelError as e:
            yield TaggedOutput(REJECTS, rejection(unit[1], reasons.BAD_ROW, str(e)))
            return
        self.read.inc(len(rows) + len(rejects))
        yield from rows
        for r in rejects:
            yield TaggedOutput(REJECTS, r)


class ReadLabels(beam.PTransform):
    """Label files (or the image listing) -> (LabelRow, reject dicts)."""

    def __init__(self, label_format: str, labels_path: str | None, images_dir: str,
                 max_age: float):
        super().__init__()
        self.units = labels.sources(label_format, labels_path, images_dir)
        self.max_age = max_age

    def expand(self, pbegin):
        out = (pbegin
               | "ListSources" >> beam.Create(self.units)
               | "Parse" >> beam.ParDo(_ReadSource(self.max_age)).with_outputs(REJECTS,
                                                                                main="rows"))
        return out.rows, out[REJECTS]


def _unique_names(item):
    name, rows = item
    rows = sorted(rows, key=lambda r: r.source)
    if len(rows) == 1:
        yield rows[0]
        return
    # A file name is the key of a label: two rows for one file cannot both be right.
    where = ", ".join(r.source for r in rows)
    for row in rows:
        yield TaggedOutput(REJECTS, rejection(
            row.source, reasons.DUPLICATE_FILE_NAME, f"{name} is labelled {len(rows)} times "
            f"({where})", file_name=name))


class RejectDuplicateFileNames(beam.PTransform):
    """LabelRows -> (rows whose file is named once, rejects for every row of a repeated name).

    The GroupByKey also spreads the rows over workers before the expensive image stage (the
    label file itself is read by a single worker)."""

    def expand(self, rows):
        out = (rows
               | "KeyByName" >> beam.Map(lambda r: (r.file_name, r))
               | "GroupByName" >> beam.GroupByKey()
               | "Check" >> beam.FlatMap(_unique_names).with_outputs(REJECTS, main="rows"))
        return out.rows, out[REJECTS]


class _LoadImage(beam.DoFn):
    def __init__(self, images_dir: str, config: images.ImageConfig):
        self.images_dir = images_dir
        self.config = config
        self.loaded = _counter("loaded")

    def setup(self):
        self.done, self.started = 0, time.monotonic()

    def process(self, row):
        from apache_beam.io.filesystems import FileSystems

        path = labels.join(self.images_dir, row.file_name)
        try:
            with FileSystems.open(path, compression_type="uncompressed") as f:
                data = f.read()
        except (IsADirectoryError, PermissionError) as e:
            # A fault of this one file (a label naming a folder, a file the job may not read):
            # a retry would fail the same way, so it is a dead letter and the job goes on.
            yield TaggedOutput(REJECTS, rejection(
                path, reasons.UNREADABLE_IMAGE, f"cannot read it: {type(e).__name__} "
                f"({e.strerror or e})", file_name=row.file_name))
            return
        except Exception as e:  # noqa: BLE001 - classified below, transient errors re-raised
            if not FileSystems.exists(path):
                yield TaggedOutput(REJECTS, rejection(
                    path, reasons.MISSING_FILE, f"named by {row.source} but not found",
                    file_name=row.file_name))
                return
            raise RuntimeError(f"reading {path}: {e}") from e
        try:
            image = images.process(data, self.config)
        except images.ImageError as e:
            yield TaggedOutput(REJECTS, rejection(path, e.reason, e.detail,
                                                  file_name=row.file_name))
            return
        self.loaded.inc()
        self._progress()
        record = {
            schema.IMAGE: image.jpeg, schema.HEIGHT: image.height, schema.WIDTH: image.width,
            schema.ORIGINAL_HEIGHT: image.original_height,
            schema.ORIGINAL_WIDTH: image.original_width, schema.FILENAME: row.file_name,
            schema.AGE: row.age, schema.ID: split.record_id(data), schema.BLUR: image.blur,
            schema.BRIGHTNESS: image.brightness, "extra": row.extra,
            # Not written to the record; used by dedup, split and error messages.
            "split": row.split, "path": path, "label_key": row.label_key(),
        }
        yield record[schema.ID], record

    def _progress(self):
        self.done += 1
        if self.done % 1000 == 0:
            rate = self.done / max(1e-9, time.monotonic() - self.started)
            _log.info("this worker has loaded %d images (%.0f images/s)", self.done, rate)


class LoadImages(beam.PTransform):
    """LabelRows -> ((id, record) pairs, rejects): read, validate, resize, measure."""

    def __init__(self, images_dir: str, config: images.ImageConfig):
        super().__init__()
        self.images_dir, self.config = images_dir, config

    def expand(self, rows):
        out = rows | "Load" >> beam.ParDo(_LoadImage(self.images_dir, self.config)).with_outputs(
            REJECTS, main="records")
        return out.records, out[REJECTS]


def _resolve_duplicates(item):
    _, records = item
    records = sorted(records, key=lambda r: r[schema.FILENAME])
    if len(records) == 1:
        yield records[0]
        return
    if len({r["label_key"] for r in records}) == 1:
        yield records[0]  # the same photo with the same labels: keep it once
        yield TaggedOutput(MERGED, len(records) - 1)
        return
    for r in records:
        others = ", ".join(f"{o[schema.FILENAME]} (age {o[schema.AGE]:g})"
                           for o in records if o is not r)
        yield TaggedOutput(REJECTS, rejection(
            r["path"], reasons.DUPLICATE_CONFLICT,
            f"same image bytes as {others} but the labels differ (age {r[schema.AGE]:g})",
            file_name=r[schema.FILENAME]))


class DropExactDuplicates(beam.PTransform):
    """(id, record) -> (records, rejects, merged counts): identical bytes are one photo."""

    def expand(self, keyed):
        out = (keyed
               | "GroupById" >> beam.GroupByKey()
               | "Resolve" >> beam.FlatMap(_resolve_duplicates).with_outputs(
                   REJECTS, MERGED, main="records"))
        return out.records, out[REJECTS], out[MERGED]


def _choose_split(record, ratios, group_by):
    if record["split"] is not None:  # the label source fixed it (APPA-REAL)
        yield record["split"], record
        return
    group = None
    if group_by is not None:
        group = record["extra"].get(group_by, "")
        if not group:
            yield TaggedOutput(REJECTS, rejection(
                record["path"], reasons.BAD_ROW, f"empty --group_by column {group_by!r}",
                file_name=record[schema.FILENAME]))
            return
    yield split.assign_split(split.split_key(record[schema.ID], group), ratios), record


class AssignSplits(beam.PTransform):
    """records -> ((split, record) pairs, rejects): a pure function of the id or group."""

    def __init__(self, ratios, group_by: str | None):
        super().__init__()
        self.ratios, self.group_by = tuple(ratios), group_by

    def expand(self, records):
        out = records | "Choose" >> beam.FlatMap(
            _choose_split, self.ratios, self.group_by).with_outputs(REJECTS, main="pairs")
        return out.pairs, out[REJECTS]


def _shard_key(pair, num_shards: int, split_sizes: dict):
    name, record = pair
    num_bytes, count = split_sizes[name]
    # Never more shards than records, so tiny splits do not become a pile of empty files.
    n = min(count, num_shards or split.auto_num_shards(num_bytes))
    return (name, split.shard_index(record[schema.ID], n), n), record


def _sum_pairs(pairs):
    """(bytes, count) pairs -> their element-wise sum (associative, so Beam may combine early)."""
    total_bytes = total_count = 0
    for num_bytes, count in pairs:
        total_bytes, total_count = total_bytes + num_bytes, total_count + count
    return total_bytes, total_count


class _WriteShard(beam.DoFn):
    def __init__(self, directory: str, extra_columns, max_age: float):
        self.directory, self.extra_columns, self.max_age = directory, list(extra_columns), max_age
        self.written = _counter("written")

    def process(self, item):
        (name, index, num_shards), records = item
        # Sorted by id: the same inputs give byte-identical shards on any runner.
        records = sorted(records, key=lambda r: r[schema.ID])
        payloads = [schema.encode(r, self.extra_columns) for r in records]
        path = labels.join(self.directory, schema.shard_name(name, index, num_shards))
        num_bytes = metadata.write_tfrecords(path, payloads)
        self.written.inc(len(records))
        yield metadata.shard_summary(name, index, num_shards, [r[schema.AGE] for r in records],
                                     num_bytes, self.max_age)


class WriteShards(beam.PTransform):
    """(split, record) pairs -> TFRecord shards in ``directory``; emits one summary per shard."""

    def __init__(self, directory: str, extra_columns, num_shards: int, max_age: float):
        super().__init__()
        self.directory, self.extra_columns = directory, extra_columns
        self.num_shards, self.max_age = num_shards, max_age

    def expand(self, pairs):
        split_sizes = (pairs
                       | "Sizes" >> beam.Map(lambda p: (p[0], (len(p[1][schema.IMAGE]), 1)))
                       | "SizesPerSplit" >> beam.CombinePerKey(_sum_pairs))
        return (pairs
                | "KeyByShard" >> beam.Map(_shard_key, self.num_shards, AsDict(split_sizes))
                | "GroupByShard" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WriteShard(self.directory, self.extra_columns,
                                                    self.max_age)))


def _count_reason(reject):
    _counter("rejected_" + reject["reason"]).inc()
    return reject


class WriteErrors(beam.PTransform):
    """Reject dicts -> DIR/errors-*.jsonl, one JSON object per rejected input; counts reasons."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, rejects):
        counted = rejects | "Count" >> beam.Map(_count_reason)
        _ = (counted
             | "ToJson" >> beam.Map(json.dumps, sort_keys=True)
             | "Write" >> beam.io.WriteToText(labels.join(self.directory, "errors"),
                                              file_name_suffix=".jsonl"))
        return counted


def build(p, config, extra_columns, staging: str):
    """Adds the whole job to pipeline ``p``; outputs go to ``staging`` (see metadata.publish)."""
    rows, label_rejects = p | "ReadLabels" >> ReadLabels(
        config.label_format, config.labels, config.images, config.max_age)
    rows, name_rejects = rows | "RejectDuplicateFileNames" >> RejectDuplicateFileNames()
    keyed, image_rejects = rows | "LoadImages" >> LoadImages(config.images, config.image)
    records, dup_rejects, merged = keyed | "DropExactDuplicates" >> DropExactDuplicates()
    pairs, split_rejects = records | "AssignSplits" >> AssignSplits(config.split_ratios,
                                                                    config.group_by)
    shards = pairs | "WriteShards" >> WriteShards(staging, extra_columns, config.num_shards,
                                                  config.max_age)
    rejects = ((label_rejects, name_rejects, image_rejects, dup_rejects, split_rejects)
               | "AllRejects" >> beam.Flatten()
               | "WriteErrors" >> WriteErrors(labels.join(staging, schema.ERRORS_DIR)))
    blur_deciles = (records
                    | "Blur" >> beam.Map(lambda r: r[schema.BLUR])
                    | "BlurDeciles" >> beam.ApproximateQuantiles.Globally(11))
    _ = (p
         | "StatsTrigger" >> beam.Create([None])
         | "WriteStats" >> beam.Map(
             metadata.write_stats_from_parts, directory=staging, config=config,
             extra_columns=list(extra_columns), shards=AsList(shards),
             reasons_=AsList(rejects | "Reasons" >> beam.Map(lambda r: r["reason"])),
             merged=AsList(merged), blur_deciles=AsList(blur_deciles)))


def run(config, pipeline_options) -> dict:
    """Runs the job to completion and publishes OUT; returns stats.json's content."""
    staging = labels.join(config.output_dir, metadata.STAGING_DIR)
    metadata.remove_tree(staging)  # leftovers of an interrupted run are never reused
    extra_columns = labels.extra_columns(config.label_format, config.labels, config.images)
    p = beam.Pipeline(options=pipeline_options)
    build(p, config, extra_columns, staging)
    started = time.monotonic()
    result = p.run()
    result.wait_until_finish()
    seconds = time.monotonic() - started
    staged = metadata.read_json(labels.join(staging, schema.STATS_FILE))
    if not any(s["count"] for s in staged["splits"].values()):
        # Checked before publish: a mistaken rerun (say a wrong --images, every row a
        # missing_file) must not replace a previous good output with nothing. Its dead letters
        # stay in staging, where the message points; the next run clears them.
        _log.info("%s", summary_line(result, staged, seconds))
        raise NoValidRecordsError(
            f"no valid records: all {staged['inputs']} inputs were rejected "
            f"({_reasons_text(staged['rejects'])}); one line per input with its reason is in "
            f"{labels.join(staging, schema.ERRORS_DIR)}/; nothing was published, so "
            f"{config.output_dir} keeps its previous output (if any)")
    stats = metadata.publish(staging, config.output_dir, config.image.image_size, extra_columns)
    _log.info("%s", summary_line(result, stats, seconds))
    return stats


def _reasons_text(rejects: dict) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(rejects.items())) or "none"


def summary_line(result, stats: dict, seconds: float) -> str:
    """One console line from the Beam counters and stats.json."""
    counters = {c.key.metric.name: c.committed for c in
                result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    rejected = {k[len("rejected_"):]: v for k, v in counters.items() if k.startswith("rejected_")}
    splits = ", ".join(f"{name} {s['count']}" for name, s in stats["splits"].items())
    return (f"read {counters.get('read', 0)} inputs, wrote {counters.get('written', 0)} records "
            f"({splits}), merged {stats['duplicates_merged']} exact duplicates, rejected "
            f"{sum(rejected.values())} ({_reasons_text(rejected)}) in {seconds:.1f} s")
