"""Label sources -> label rows (one per image) plus rejects for rows that were not understood.

``--label_format``: ``csv`` (a header with ``file_name`` and ``real_age`` or ``age``; other
columns are kept as string extras), ``utkface`` (age, gender and race from each image's name,
``AGE_GENDER_RACE_DATE.jpg``) or ``appa_real`` (the folder of ``gt_avg_{train,valid,test}.csv``;
images in ``--images/{train,valid,test}/``; APPA-REAL's own split is kept).
Parsing is pure (text or names in, rows and rejects out); ``iter_source`` adds the file IO
through Beam's FileSystems (local and gs:// alike) and streams the rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from contract import files, reasons
from preprocessing.dead_letters import rejection

FORMATS = ("csv", "utkface", "appa_real")
FILE_COLUMN = "file_name"
AGE_COLUMNS = ("real_age", "age")
# APPA-REAL's split folders and label files, mapped to our split names.
APPA_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
APPA_LABELS = "gt_avg_{}.csv"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
UTKFACE_COLUMNS = ("gender", "race")
_UTKFACE_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_\d+", re.ASCII)  # ASCII: no full-width digits
# An age as people and spreadsheets write it: ASCII digits, an optional decimal point and sign.
# float() alone would also take '1_0' (10), 'nan', 'inf', '1e1', ' 3 ' and full-width digits.
_AGE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)", re.ASCII)


class LabelError(ValueError):
    """A label source that cannot be read at all (missing columns, empty file)."""


@dataclass(frozen=True)
class LabelRow:
    file_name: str  # relative to --images; unique per image
    age: float
    source: str  # "labels.csv:12" or the file name: where the row came from, for error messages
    extra: dict = field(default_factory=dict)  # column name -> string
    split: str | None = None  # set when the source dictates the split (APPA-REAL)

    def group(self, column: str | None) -> str | None:
        """The value deciding this row's split under ``--group_by=column`` (None: empty)."""
        return None if column is None else self.extra.get(column) or None

    def label_key(self) -> tuple:
        """What 'identical labels' means when two files hold the same bytes."""
        return (self.age, tuple(sorted(self.extra.items())), self.split)


def parse_age(text: str, max_age: float) -> float:
    """'34' -> 34.0; raises ValueError with a message for anything but a plain decimal number
    (so no '1_0', 'nan', 'inf', '1e1' or full-width digits), negative or too old ages."""
    if not isinstance(text, str) or not _AGE.fullmatch(text):
        raise ValueError(f"age {text!r} is not a number written like 34 or 34.5")
    age = float(text)
    if not math.isfinite(age):  # more digits than a float holds
        raise ValueError(f"age {text!r} is not finite")
    if age < 0:
        raise ValueError(f"age {age:g} is negative")
    if age > max_age:
        raise ValueError(f"age {age:g} is above --max_age {max_age:g}")
    return age


def csv_columns(header_line: str, source: str) -> tuple[str, str, list[str]]:
    """(file column, age column, extra columns) from a header, or LabelError naming what lacks."""
    return _checked_columns(_header(header_line), source)


def _header(header_line: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([header_line]), [])]


def _checked_columns(columns: list[str], source: str) -> tuple[str, str, list[str]]:
    if not any(columns):
        raise LabelError(f"{source}: the label file is empty (expected a header with "
                         f"{FILE_COLUMN} and one of {'/'.join(AGE_COLUMNS)})")
    age_column = next((c for c in AGE_COLUMNS if c in columns), None)
    if FILE_COLUMN not in columns or age_column is None:
        raise LabelError(f"{source}: header {columns} lacks {FILE_COLUMN!r} and/or an age column "
                         f"({' or '.join(AGE_COLUMNS)})")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise LabelError(f"{source}: header repeats column(s) {duplicated}")
    extras = [c for c in columns if c not in (FILE_COLUMN, age_column) and c]
    return FILE_COLUMN, age_column, extras


def parse_csv(text: str, source: str, max_age: float, split: str | None = None,
              prefix: str = "") -> tuple[list, list]:
    """CSV text -> (rows, rejects). ``prefix`` is prepended to file names (APPA-REAL folders)."""
    return _rows_and_rejects(iter_csv(io.StringIO(text, newline=""), source, max_age, split,
                                      prefix))


def iter_csv(stream, source: str, max_age: float, split: str | None = None,
             prefix: str = "") -> Iterator[LabelRow | dict]:
    """A CSV text stream (opened with newline="") -> its LabelRows and rejects, one at a time,
    so memory does not grow with the file."""
    first = stream.readline()
    if not first:
        raise LabelError(f"{source}: the label file is empty")
    header = _header(first)
    file_col, age_col, extras = _checked_columns(header, source)
    name_at = header.index(file_col)
    # csv.reader (not DictReader) so that a row with too many fields is caught, not truncated.
    # newline="": lines end at \n, \r\n or a lone \r (old Mac exports), as the csv docs ask.
    for line_no, values in enumerate(csv.reader(stream), start=2):
        if not values or not any(v.strip() for v in values):
            continue
        where = f"{source}:{line_no}"
        raw = ",".join(values)
        if len(values) != len(header):
            yield rejection(f"{where}: {raw}", reasons.BAD_ROW,
                            f"{len(values)} fields, header has {len(header)}",
                            file_name=prefix + values[min(name_at, len(values) - 1)])
            continue
        record = {name: value.strip() for name, value in zip(header, values, strict=True)}
        # The name is kept as written: ' a.jpg' and 'a.jpg' are two files. Ages and extras are
        # stripped ('a.jpg, 34' is how many people type a CSV).
        name = values[name_at]
        if not name.strip():
            yield rejection(f"{where}: {raw}", reasons.BAD_ROW, "empty file_name")
            continue
        try:
            age = parse_age(record[age_col], max_age)
        except ValueError as e:
            yield rejection(f"{where}: {raw}", reasons.BAD_AGE, str(e), file_name=prefix + name)
            continue
        yield LabelRow(file_name=prefix + name, age=age, source=where, split=split,
                       extra={c: record[c] for c in extras})


def _rows_and_rejects(items) -> tuple[list, list]:
    rows, rejects = [], []
    for item in items:
        (rejects if isinstance(item, dict) else rows).append(item)
    return rows, rejects


def parse_utkface_names(names: Iterable[str], max_age: float) -> tuple[list, list]:
    """UTKFace file names -> (rows, rejects). Non-image names are skipped, not rejected."""
    return _rows_and_rejects(iter_utkface_names(names, max_age))


def iter_utkface_names(names: Iterable[str], max_age: float) -> Iterator[LabelRow | dict]:
    """UTKFace file names -> LabelRows and rejects, one at a time."""
    for name in names:
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        match = _UTKFACE_NAME.match(name)
        if not match:
            yield rejection(name, reasons.BAD_ROW,
                            "file name does not follow AGE_GENDER_RACE_DATE.jpg", file_name=name)
            continue
        age_text, gender, race = match.groups()
        try:
            age = parse_age(age_text, max_age)
        except ValueError as e:
            yield rejection(name, reasons.BAD_AGE, str(e), file_name=name)
            continue
        yield LabelRow(file_name=name, age=age, source=name,
                       extra=dict(zip(UTKFACE_COLUMNS, (gender, race), strict=True)))


def sources(label_format: str, labels: str | None, images: str) -> list[tuple]:
    """The units ``read_source`` reads: (kind, path, split, prefix). Cheap; no file IO."""
    if label_format == "csv":
        return [("csv", labels, None, "")]
    if label_format == "utkface":
        return [("listing", images, None, "")]
    if label_format == "appa_real":
        return [("csv", files.join(labels, APPA_LABELS.format(folder)), split, folder + "/")
                for folder, split in APPA_SPLITS.items()]
    raise ValueError(f"--label_format must be one of {FORMATS}, got {label_format!r}")


def read_source(unit: tuple, max_age: float) -> tuple[list, list]:
    """Reads one unit from ``sources`` (local or gs://) whole: (rows, rejects)."""
    return _rows_and_rejects(iter_source(unit, max_age))


def iter_source(unit: tuple, max_age: float) -> Iterator[LabelRow | dict]:
    """One unit from ``sources`` (local or gs://) -> its LabelRows and rejects, streamed.

    A CSV is read twice: first to the end for faults that reject the whole file (not UTF-8,
    not CSV), then for its rows, so an unreadable file adds no rows and memory stays flat."""
    from apache_beam.io.filesystems import FileSystems

    kind, path, split, prefix = unit
    if kind == "listing":
        base = path.rstrip("/") + "/"
        matches = FileSystems.match([base + "*"])[0].metadata_list
        names = sorted(m.path[len(base):] for m in matches)
        yield from iter_utkface_names((n for n in names if "/" not in n), max_age)
        return
    for _ in _decoded(path, csv.reader):
        pass
    # APPA-REAL's apparent-age columns stay as extras; only real_age is the target.
    yield from _decoded(path, lambda text: iter_csv(text, source=path, max_age=max_age,
                                                    split=split, prefix=prefix))


def _decoded(path: str, parse):
    """Yields what ``parse`` yields from the file's text; encoding and CSV faults become a
    LabelError naming the file (otherwise the whole Beam job dies with a traceback)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as raw:
        # utf-8-sig: spreadsheet exports start with a BOM.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            yield from parse(text)
        except UnicodeDecodeError:
            at, bad = _first_bad_utf8(path)
            raise LabelError(f"{path}: not UTF-8 text (byte {at}: {bad!r}); save the label "
                             "file as UTF-8 CSV") from None
        except csv.Error as e:  # e.g. a binary file passed as --labels: a 'field' over 128 KB
            raise LabelError(f"{path}: not a readable CSV ({e})") from None


def _first_bad_utf8(path: str) -> tuple[int, bytes]:
    """Offset and first bytes of the first invalid UTF-8 sequence, read in chunks."""
    from apache_beam.io.filesystems import FileSystems

    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with FileSystems.open(path) as f:
        while chunk := f.read(1 << 16):
            pending = decoder.getstate()[0]  # bytes of a character split between chunks
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                data = pending + chunk
                return offset - len(pending) + e.start, data[e.start:e.start + 4]
            offset += len(chunk)
    return offset, b""


def extra_columns(label_format: str, labels: str | None, images: str) -> list[str]:
    """The extra columns every row of this source carries, in header order (reads headers)."""
    if label_format == "utkface":
        return list(UTKFACE_COLUMNS)
    columns: list[str] = []
    for _, path, _, _ in sources(label_format, labels, images):
        for name in csv_columns(read_header(path), path)[2]:
            if name not in columns:
                columns.append(name)
    return columns


def read_header(path: str) -> str:
    """The first line of a (local or gs://) CSV, for validating flags before the job starts."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        head = f.read(64 * 1024).decode("utf-8-sig", errors="replace")
    return head.splitlines()[0] if head else ""
