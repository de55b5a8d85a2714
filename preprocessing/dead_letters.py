"""Dead letters: one line of OUT/errors/errors.jsonl per rejected input, with its reason."""

from __future__ import annotations

import json

from contract import files, reasons


def rejection(input_: str, reason: str, detail: str, file_name: str | None = None) -> dict:
    """One dead-letter line: which input, which reason code, and a message for a human.

    ``file_name`` (relative to --images) is added whenever the input names an image, so that
    errors/ can be joined back to the label file.
    """
    if reason not in reasons.ALL:
        raise ValueError(f"unknown rejection reason {reason!r}")
    line = {"input": input_, "reason": reason, "detail": detail}
    if file_name is not None:
        line["file_name"] = file_name
    return line


def to_line(reject: dict) -> str:
    """The record as one JSON line, keys sorted."""
    return json.dumps(reject, sort_keys=True)


def write_lines(path: str, lines) -> None:
    # Sorted: the same inputs give the same file, which diffs cleanly between runs.
    files.write_bytes(path, "".join(line + "\n" for line in sorted(lines)).encode("utf-8"),
                      "application/json")
