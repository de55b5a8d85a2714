"""A split's shards checked against stats.json: before reading (files, sizes) and while reading
(records per file), so that a damaged or mixed output is an error naming the shard, never a
silently smaller data set.

stats.json (preprocessing.stats_assembly.split_stats) gives per split ``count``, ``num_shards``,
``num_bytes`` and ``shard_lengths`` (records per shard index); a ``shards`` map (file name ->
bytes), per split or at the top level, is used when present. Older or hand-made outputs lack
some of these: each check runs on what is there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tensorflow as tf

from contract import schema
from contract.stats import Stats

# Marks the errors raised here (also inside the tf.data graph) so callers can find them.
DAMAGED = "damaged shard"
BAD_RECORD = "bad record"
_NAME = re.compile(r"^(?P<split>.+)-(?P<index>\d{5,})-of-(?P<total>\d{5,})$")
_COUNT_HINT = ("the file is truncated, or a record in it is corrupted (the first read error is "
               "logged above), or it was replaced by a shard of another run")
# Records are counted per chunk, not per record: the count's ops then run once per this many.
_COUNT_CHUNK = 32


class ShardError(ValueError):
    """The shards on disk disagree with stats.json (missing, foreign, short or resized)."""


@dataclass(frozen=True)
class Expected:
    count: int | None = None
    num_shards: int | None = None
    num_bytes: int | None = None
    shard_lengths: tuple[int, ...] | None = None  # records per shard index
    shard_bytes: dict | None = None  # file name -> bytes


def expected(stats: Stats, split: str) -> Expected:
    """What stats.json says the split's shards hold (None for what it does not record)."""
    entry = stats.split(split)
    if entry is None:
        return Expected()
    sizes = entry.shards or {name: size for name, size in (stats.shards or {}).items()
                             if (m := _NAME.match(name)) and m["split"] == split}
    return Expected(count=entry.count, num_shards=entry.num_shards, num_bytes=entry.num_bytes,
                    shard_lengths=entry.shard_lengths or None, shard_bytes=dict(sizes) or None)


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def check_files(data_dir: str, split: str, files: list[str], stats: Stats) -> list[int]:
    """Raises ShardError unless `files` are exactly the split's shards with stats.json's sizes.

    Returns the number of records stats.json lists for each file (-1 where it lists none).
    Costs one stat per file; records are read only to name the culprit once a size is off.
    """
    want = expected(stats, split)
    where = f"{data_dir!r} ({schema.STATS_FILE} lists {want.num_shards} {split!r} shards)"
    names = [_basename(f) for f in files]
    totals = {name: int(m["total"]) for name in names if (m := _NAME.match(name))}
    num_shards = want.num_shards
    if num_shards is None and totals:  # no stats entry: the -of- parts must still agree
        num_shards = max(set(totals.values()), key=list(totals.values()).count)
        where = f"{data_dir!r} (the shards' names say {num_shards})"
    foreign = sorted(n for n in names if totals.get(n) != num_shards)
    if foreign:
        raise ShardError(f"{DAMAGED}: {', '.join(foreign)} in {where} do not belong to this "
                         f"output (another run's shards?); delete them or re-run preprocessing")
    present = {int(_NAME.match(n)["index"]) for n in names}
    missing = [schema.shard_name(split, i, num_shards) for i in range(num_shards)
               if i not in present]
    if missing:
        raise ShardError(f"{DAMAGED}: {len(missing)} shard(s) missing in {where}: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    lengths = want.shard_lengths if want.shard_lengths and len(want.shard_lengths) == num_shards \
        else None
    counts = [lengths[int(_NAME.match(n)["index"])] if lengths else -1 for n in names]
    if want.shard_bytes or want.num_bytes is not None:
        sizes = [tf.io.gfile.stat(path).length for path in files]
        listed = [(want.shard_bytes or {}).get(name) for name in names]
        wrong = [i for i, (a, b) in enumerate(zip(sizes, listed, strict=True))
                 if b is not None and a != b]
        if not wrong and want.num_bytes is not None and sum(sizes) != want.num_bytes:
            wrong = list(range(len(files)))  # the total is off: find which shard by its records
        if wrong:
            found = _diagnose([(files[i], sizes[i], listed[i], counts[i]) for i in wrong])
            total = (f" (the {split!r} shards hold {sum(sizes)} bytes, {schema.STATS_FILE} "
                     f"lists {want.num_bytes})" if want.num_bytes not in (None, sum(sizes))
                     else "")
            raise ShardError(f"{DAMAGED}: {found}{total}")
    return counts


def _diagnose(suspects) -> str:
    """Which of the (path, bytes, listed bytes, listed records) is short, corrupted or foreign:
    reads their records (only called once the sizes already showed that one is)."""
    found = []
    for path, size, listed_size, want in suspects:
        seen, error = 0, ""
        try:
            for chunk in tf.data.TFRecordDataset(path).batch(1024):
                seen += int(chunk.shape[0])
        except tf.errors.OpError as e:
            error = f", then {e.message.split(' [Op:')[0].split('}} ')[-1]}"
        bad_size = listed_size is not None and size != listed_size
        if error or bad_size or (want >= 0 and seen != want):
            listed = (f" where {schema.STATS_FILE} lists {want} ({abs(want - seen)} "
                      f"{'missing' if seen < want else 'extra'})" if 0 <= want != seen else "")
            sizes = f" in {size} bytes ({schema.STATS_FILE}: {listed_size})" if bad_size else ""
            found.append(f"{path} holds {seen} readable records{listed}{sizes}{error}")
    return "; ".join(found) or (f"{', '.join(p for p, *_ in suspects)}: the sizes differ from "
                                f"{schema.STATS_FILE} though the records read whole: a shard "
                                "of another run?")


def read_chunks(path, expected_records, buffer_size: int, checked: bool = True
                ) -> tf.data.Dataset:
    """One shard's records in chunks (unbatch them); when `checked`, fails at the file's end
    unless exactly `expected_records` (an int or a tensor) were read.

    A read error inside the file (a corrupted or cut record) ends the file early and the count
    then names it: TF's own error names only a byte offset. Counted here, where one file's
    records pass anyway, in chunks so that the count's ops run once per _COUNT_CHUNK records,
    rather than by a pre-pass over every record's framing at start-up: that reads the whole
    split once more before the first step (a second download on gs://).
    """
    records = tf.data.TFRecordDataset(path, buffer_size=buffer_size)
    if not checked:  # nothing to count against: read errors must then stop the reader
        return records.batch(_COUNT_CHUNK)
    expected_records = tf.cast(expected_records, tf.int64)
    chunks = records.ignore_errors(log_warning=True).batch(_COUNT_CHUNK)
    # An empty chunk marks the file's end (batch never yields one): that is where to check.
    chunks = chunks.concatenate(tf.data.Dataset.from_tensors(tf.zeros([0], tf.string)))

    def count(seen, chunk):
        seen += tf.size(chunk, out_type=tf.int64)
        at_end = tf.equal(tf.size(chunk), 0)
        ok = tf.logical_or(tf.logical_not(at_end), tf.equal(seen, expected_records))
        # The message's parts are only joined into one line if the check fails (clean_error).
        check = tf.debugging.Assert(ok, [
            DAMAGED + ":", path, "holds", seen, "records where " + schema.STATS_FILE + " lists",
            expected_records, _COUNT_HINT])
        with tf.control_dependencies([check]):
            return seen, tf.identity(chunk)

    return chunks.scan(tf.constant(0, tf.int64), count)


def clean_error(error: Exception) -> str | None:
    """The one-line message of a shard or record check that failed inside tf.data (an Assert,
    whose parts TF prints as "[part] [part] ..."), or None if `error` is not one."""
    text = str(error)
    starts = [i for i in (text.find("[" + DAMAGED), text.find("[" + BAD_RECORD)) if i >= 0]
    if not starts:
        return None
    parts = re.findall(r"\[([^\]]*)\]", text[min(starts):].splitlines()[0])
    if parts[0] == DAMAGED + ":" and len(parts) == 7:  # read_chunks' count
        path, seen, listed = parts[1], int(parts[3]), int(parts[5])
        return (f"{DAMAGED}: {path} holds {seen} records where {schema.STATS_FILE} lists "
                f"{listed} ({abs(listed - seen)} {'missing' if seen < listed else 'extra'}): "
                f"{_COUNT_HINT}")
    return " ".join(parts)
