"""The Beam graph: named composite transforms, and ``run`` which tests and run.py both call.

    ReadLabels -> expected counts per split -> PlanShards (side input) ;
    ReadLabels -> rows packed by file name -> LoadImages (a repeated name is rejected, every
    other row's image read) -> framed records in fragment files + small Parts ;
    -> packed claims -> ResolveDuplicates
    Parts + duplicate verdicts -> WriteShards (staging) ; rejects -> WriteErrors ; -> WriteStats

Every stage returns (good, rejects): nothing is dropped silently. Encoded images never cross a
shuffle (plan.py, fragments.py, dedup.py), and on the DirectRunner nothing per input does
(packing.py). Per-input values travel packed, a batch per Beam element, and each consumer works
a whole bucket per call: Beam's cost per element exceeds the work of parsing a label row.
``run`` locks OUT and writes into OUT/.staging/RUN_ID;
``publish.publish`` moves the result into OUT only if the job succeeded with at least one record.
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pvalue import AsDict, AsList, AsSingleton, TaggedOutput
from apache_beam.transforms.window import GlobalWindows

from contract import files, limits, reasons, schema
from contract import stats as stats_file
from imaging import images
from preprocessing import (
    dead_letters,
    dedup,
    face_stage,
    fragments,
    inputs,
    labels,
    lock,
    packing,
    publish,
    records,
    runners,
    split,
    stats_assembly,
    tfrecord_writer,
)
from preprocessing import plan as shard_plan
from preprocessing.dead_letters import NAMESPACE, REJECTS, rejection
from preprocessing.label_stage import ReadLabels

MERGED = "merged"
CLAIMS = "claims"
BLUR = "blur"
PROGRESS_EVERY = 1000  # images per worker between progress lines (bench.preprocess_scaling)
SPILL_DIR = "shuffle"  # under staging: packing.Packer's batches on local runners
_log = logging.getLogger(__name__)


class NoValidRecordsError(RuntimeError):
    """Every input was rejected: nothing to train on."""


def _counter(name: str):
    return Metrics.counter(NAMESPACE, name)


def _unique_names(item):
    name, rows = item
    rows = sorted((labels.LabelRow(*fields) for fields in rows), key=lambda r: r.source)
    if len(rows) == 1:
        yield rows[0]
        return
    # A file name is the key of a label: two rows for one file cannot both be right.
    where = ", ".join(r.source for r in rows)
    for row in rows:
        yield TaggedOutput(REJECTS, rejection(
            row.source, reasons.DUPLICATE_FILE_NAME, f"{name} is labelled {len(rows)} times "
            f"({where})", file_name=name))


class _LoadImage(beam.DoFn):
    """A bucket of label rows grouped by file name -> for each row whose file is named once, its
    framed record in a fragment file (a Part per shard and bundle) and a claim on its id, packed
    by bucket like the rows (packing.Packer); rejects for the rows of a repeated name.

    A whole bucket per call: one Beam element per row through the grouping, the check and the
    load cost more than reading and framing a small image does."""

    def __init__(self, images_dir: str, config: images.ImageConfig, fragments_dir: str, ratios,
                 group_by, extra_columns, max_file_bytes: int, framer=None,
                 spill_dir: str | None = None):
        self.images_dir, self.config, self.fragments_dir = images_dir, config, fragments_dir
        self.spill_dir = spill_dir
        self.framer = framer or face_stage.PlainFramer(config)  # face_stage: --face
        self.max_file_bytes = max_file_bytes
        self.ratios, self.group_by = tuple(ratios), group_by
        self.extra_columns = list(extra_columns)
        self.loaded = _counter("loaded")

    def setup(self):
        self.done, self.started = 0, time.monotonic()
        self.framer.setup()  # the face detector loads here: once per worker, not per photo

    def start_bundle(self):
        self.spill = fragments.Spill(self.fragments_dir)
        self.claims = packing.Packer(self.spill_dir)

    def finish_bundle(self):
        for keyed_part in self.spill.flush():
            yield GlobalWindows.windowed_value(keyed_part)
        for packed in self.claims.flush():
            yield TaggedOutput(CLAIMS, GlobalWindows.windowed_value(packed))

    def process(self, bucket, plan):
        for group in packing.unpack_bucket(bucket):
            for row in _unique_names(group):
                if isinstance(row, TaggedOutput):
                    yield row
                else:
                    yield from self._load(row, plan)

    def _load(self, row, plan):
        path = files.join(self.images_dir, row.file_name)
        group = row.group(self.group_by)
        if self.group_by is not None and group is None:
            # Known from the label alone: no need to read the image.
            yield TaggedOutput(REJECTS, rejection(
                path, reasons.BAD_ROW, f"empty --group_by column {self.group_by!r}",
                file_name=row.file_name))
            return
        data = yield from self._read(path, row)
        if data is None:
            return
        try:
            image, face, faces_found = self.framer.frame(data)
        except images.ImageError as e:
            yield TaggedOutput(REJECTS, rejection(path, e.reason, e.detail,
                                                  file_name=row.file_name))
            return
        self.loaded.inc()
        self._progress()
        record = records.face_record(row.file_name, row.age, row.extra, image, data, face)
        record_id = record[schema.ID]
        split_name = split.choose_split(record_id, row.split, group, self.ratios)
        num_shards = plan.get(split_name, 1)
        for packed in self.claims.add(record_id, (row.file_name, row.label_key(), row.age, path)):
            yield TaggedOutput(CLAIMS, packed)
        # The shard is known here (split.py planned the counts), so the framed record goes
        # straight into this bundle's fragment file; only its Part crosses the shuffle (on the
        # DirectRunner every shuffled byte passes through the runner process).
        frame = tfrecord_writer.tfrecord_frames([schema.encode(record, self.extra_columns)])
        self.spill.add((split_name, split.shard_index(record_id, num_shards), num_shards),
                       fragments.Entry(record_id, row.file_name, row.age, image.blur, len(frame),
                                       faces_found),
                       frame)
        if self.spill.full():
            yield from self.spill.flush()

    def _read(self, path, row):
        """The file's bytes, or None after yielding its dead letter."""
        try:
            return inputs.load(self.images_dir, row.file_name, row.source, self.max_file_bytes)
        except inputs.Refused as e:
            yield TaggedOutput(REJECTS, rejection(path, e.reason, e.detail,
                                                  file_name=row.file_name))
            return None

    def _progress(self):
        self.done += 1
        if self.done % PROGRESS_EVERY == 0:
            rate = self.done / max(1e-9, time.monotonic() - self.started)
            _log.info("this worker has loaded %d images (%.0f images/s)", self.done, rate)


class LoadImages(beam.PTransform):
    """Label rows packed by file-name bucket (ReadLabels) -> ((shard key,
    fragments.Part), claims on ids packed by bucket, rejects): reject the rows of a file name
    labelled more than once, then read, validate, resize, measure, choose the split and shard,
    encode, spill to fragment files.

    Grouping by name also spreads the rows over the workers (the label file itself is read by a
    single worker). A claim is (id, the fields of a dedup.Claim as a plain tuple): Beam's fast
    coder encodes plain tuples without pickling them. ``spill_dir``: see packing.Packer."""

    def __init__(self, images_dir: str, config: images.ImageConfig, plan, fragments_dir: str,
                 ratios=split.DEFAULT_RATIOS, group_by: str | None = None, extra_columns=(),
                 max_file_bytes: int = limits.MAX_READ_BYTES, framer=None,
                 spill_dir: str | None = None):
        super().__init__()
        self.plan = plan
        self.load = _LoadImage(images_dir, config, fragments_dir, ratios, group_by,
                               extra_columns, max_file_bytes, framer, spill_dir)

    def expand(self, packed_rows):
        out = (packed_rows
               | "GroupByName" >> beam.GroupByKey()
               | "Load" >> beam.ParDo(self.load, AsSingleton(self.plan)).with_outputs(
                   REJECTS, CLAIMS, main="records"))
        return out.records, out[CLAIMS], out[REJECTS]


def _resolve_bucket(bucket):
    """One bucket of packed claims -> verdicts for its ids claimed more than once, with their
    rejects and merged counts (a whole bucket per call, as in _LoadImage)."""
    for record_id, fields in packing.unpack_bucket(bucket):
        if len(fields) == 1:
            continue
        keeper, rejects, merged = dedup.resolve([dedup.Claim(*f) for f in fields])
        yield record_id, keeper
        for r in rejects:
            yield TaggedOutput(REJECTS, r)
        if merged:
            yield TaggedOutput(MERGED, merged)


class ResolveDuplicates(beam.PTransform):
    """Claims packed by bucket (LoadImages) -> (verdicts (id, file name kept or None), rejects,
    merged counts).

    Only claims cross this shuffle, never pixels; ids claimed once get no verdict."""

    def expand(self, packed_claims):
        out = (packed_claims
               | "GroupById" >> beam.GroupByKey()
               | "Resolve" >> beam.FlatMap(_resolve_bucket).with_outputs(REJECTS, MERGED,
                                                                        main="verdicts"))
        return out.verdicts, out[REJECTS], out[MERGED]


class _WriteShard(beam.DoFn):
    def __init__(self, directory: str, max_age: float):
        self.directory, self.max_age = directory, max_age
        self.written = _counter("written")

    def process(self, item, verdicts):
        (name, index, num_shards), parts = item
        kept = [(entry, frame) for part in parts for entry, frame in fragments.read(part)
                if dedup.kept(verdicts, entry.record_id, entry.file_name)]
        if not kept:  # every record of this shard was a rejected duplicate
            return
        # Sorted by id (then name): the same inputs give byte-identical shards on any runner.
        kept.sort(key=lambda pair: (pair[0].record_id, pair[0].file_name))
        path = files.join(self.directory, schema.shard_name(name, index, num_shards))
        num_bytes = tfrecord_writer.write_frames(path, [frame for _, frame in kept])
        self.written.inc(len(kept))
        summary = stats_assembly.shard_summary(name, index, num_shards,
                                               [e.age for e, _ in kept], num_bytes, self.max_age)
        summary[face_stage.MULTI_FACE_KEPT] = sum(e.faces_found > 1 for e, _ in kept)
        yield summary
        # One list per shard (ApproximateQuantiles takes batches): not one element per record.
        yield TaggedOutput(BLUR, [entry.blur for entry, _ in kept])


class WriteShards(beam.PTransform):
    """(shard key, fragments.Part) -> TFRecord shards in ``directory``, dropping the copies that
    ``verdicts`` do not keep; emits one summary per shard and a list per shard of the blur of
    every record written."""

    def __init__(self, directory: str, max_age: float, verdicts):
        super().__init__()
        self.directory, self.max_age, self.verdicts = directory, max_age, verdicts

    def expand(self, keyed):
        out = (keyed
               | "GroupByShard" >> beam.GroupByKey()
               | "Write" >> beam.ParDo(_WriteShard(self.directory, self.max_age),
                                       AsDict(self.verdicts)).with_outputs(BLUR, main="shards"))
        return out.shards, out[BLUR]


def build(p, config, extra_columns, staging: str, spill: bool = False):
    """Adds the whole job to pipeline ``p``; outputs go to ``staging`` (see publish.publish).

    ``spill``: the per-input shuffles (file names, dedup claims) go through files in staging,
    for runners that hold every shuffle in their own process (packing.py)."""
    spill_dir = files.join(staging, SPILL_DIR) if spill else None
    rows, expected, label_rejects = p | "ReadLabels" >> ReadLabels(
        config.label_format, config.labels, config.images, config.max_age, config.split_ratios,
        config.group_by, spill_dir)
    plan = expected | "PlanShards" >> shard_plan.PlanShards(config.num_shards,
                                                             config.image.framing.image_size)
    keyed, claims, image_rejects = rows | "LoadImages" >> LoadImages(
        config.images, config.image, plan, files.join(staging, fragments.FRAGMENTS_DIR),
        config.split_ratios, config.group_by, extra_columns, config.max_file_bytes,
        face_stage.framer(config), spill_dir)
    verdicts, dup_rejects, merged = claims | "ResolveDuplicates" >> ResolveDuplicates()
    shards, blur = keyed | "WriteShards" >> WriteShards(staging, config.max_age, verdicts)
    rejects = ((label_rejects, image_rejects, dup_rejects)
               | "AllRejects" >> beam.Flatten()
               | "WriteErrors" >> dead_letters.WriteErrors(files.join(staging, schema.ERRORS_DIR),
                                                           NAMESPACE))
    blur_deciles = blur | "BlurDeciles" >> beam.ApproximateQuantiles.Globally(
        11, input_batched=True)
    _ = (p
         | "StatsTrigger" >> beam.Create([None])
         | "WriteStats" >> beam.Map(
             stats_assembly.write_stats_from_parts, directory=staging, config=config,
             extra_columns=list(extra_columns), shards=AsList(shards),
             # Counted in the workers (a lifted combine): a million bad rows are a few numbers.
             reasons_=AsList(rejects | "Reasons" >> beam.Map(lambda r: r["reason"])
                             | "CountReasons" >> beam.combiners.Count.PerElement()),
             merged=AsList(merged), blur_deciles=AsList(blur_deciles)))


def run(config, pipeline_options) -> dict:
    """Runs the job to completion and publishes OUT; returns stats.json's content.

    OUT is locked for the whole run (lock.py): a second run into it fails at once."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    project = pipeline_options.view_as(GoogleCloudOptions).project
    with lock.held(config.output_dir, project) as held:
        # Under the lock no other run is staging: every older staging folder is a leftover of
        # an interrupted run, never reused.
        staging_root = files.join(config.output_dir, publish.STAGING_DIR)
        files.remove_tree(staging_root)
        stats = _run_locked(config, pipeline_options, files.join(staging_root, held.run_id))
        files.remove_tree(staging_root)
        return stats


def _run_locked(config, pipeline_options, staging: str) -> dict:
    extra_columns = config.extra_columns
    runner = runners.runner_for(pipeline_options)
    p = beam.Pipeline(runner=runner, options=pipeline_options)
    # The FnApiRunner (what runner_for returns) holds every shuffle in its own process; Dataflow
    # shuffles outside the workers, where spilling would only add small reads.
    build(p, config, extra_columns, staging, spill=runner is not None)
    started = time.monotonic()
    result = p.run()
    result.wait_until_finish()
    seconds = time.monotonic() - started
    staged = stats_file.read(staging)
    if not any(s.count for s in staged.splits.values()):
        # Checked before publish: a mistaken rerun (say a wrong --images, every row a
        # missing_file) must not replace a previous good output with nothing. Its dead letters
        # stay in staging, where the message points; the next run clears them.
        _log.info("%s", summary_line(result, staged, seconds))
        raise NoValidRecordsError(
            f"no valid records: all {staged.inputs} inputs were rejected "
            f"({_reasons_text(staged.rejects)}); one line per input with its reason is in "
            f"{files.join(staging, schema.ERRORS_DIR)}/; nothing was published, so "
            f"{config.output_dir} keeps its previous output (if any)")
    stats = publish.publish(staging, config.output_dir, config.image.framing.image_size,
                            extra_columns)
    _log.info("%s", summary_line(result, stats, seconds))
    return stats.to_dict()


def _reasons_text(rejects: dict) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(rejects.items())) or "none"


def summary_line(result, stats: stats_file.Stats, seconds: float) -> str:
    """One console line from the Beam counters and stats.json."""
    counters = {c.key.metric.name: c.committed for c in
                result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    rejected = {k[len(dead_letters.REJECTED):]: v for k, v in counters.items()
                if k.startswith(dead_letters.REJECTED)}
    splits = ", ".join(f"{name} {s.count}" for name, s in stats.splits.items())
    return (f"read {counters.get('read', 0)} inputs, wrote {counters.get('written', 0)} records "
            f"({splits}), merged {stats.duplicates_merged} exact duplicates, rejected "
            f"{sum(rejected.values())} ({_reasons_text(rejected)}) in {seconds:.1f} s")
