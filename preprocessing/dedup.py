"""Exact duplicates: files with the same bytes are one photo. Pure functions on small claims.

Every loaded image makes a *claim* on its id (the hash of its bytes): its file name, labels and
path, but not its pixels. The claims of one id are resolved here: identical labels keep the copy
whose name sorts first, conflicting labels reject every copy (nobody can tell which label is
right). Only ids with several claims get a verdict, so the verdicts are as small as the number
of duplicate groups; the shard writer drops every copy a verdict does not keep. Keeping the
pixels out of this step is what lets the encoded images go from the load stage straight to
their shard's fragment file (fragments.py) without a shuffle.
"""

from __future__ import annotations

from typing import NamedTuple

from contract import reasons
from preprocessing.dead_letters import rejection


class Claim(NamedTuple):
    file_name: str
    label_key: tuple  # LabelRow.label_key(): equal keys are "the same labels"
    age: float
    path: str  # for the dead-letter line


def resolve(claims) -> tuple[str | None, list[dict], int]:
    """Claims on one id -> (file name to keep or None, rejects, copies merged into the keeper)."""
    claims = sorted(claims, key=lambda c: c.file_name)
    if len({c.label_key for c in claims}) == 1:
        return claims[0].file_name, [], len(claims) - 1
    rejects = []
    for c in claims:
        others = ", ".join(f"{o.file_name} (age {o.age:g})" for o in claims if o is not c)
        rejects.append(rejection(
            c.path, reasons.DUPLICATE_CONFLICT,
            f"same image bytes as {others} but the labels differ (age {c.age:g})",
            file_name=c.file_name))
    return None, rejects, 0


def kept(verdicts: dict, record_id: str, file_name: str) -> bool:
    """Whether the shard writer keeps this copy: yes unless a verdict on its id says otherwise."""
    return record_id not in verdicts or verdicts[record_id] == file_name
