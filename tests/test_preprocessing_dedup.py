"""preprocessing.dedup: which copy of an exact duplicate is kept, on claims alone."""

from contract import reasons
from preprocessing import dedup


def _claim(name, age, gender="1"):
    return dedup.Claim(name, (float(age), (("gender", gender),), None), float(age), "/i/" + name)


def test_identical_labels_keep_the_first_name_and_count_the_rest_as_merged():
    keeper, rejects, merged = dedup.resolve([_claim("b.jpg", 30), _claim("a.jpg", 30),
                                             _claim("c.jpg", 30)])
    assert (keeper, rejects, merged) == ("a.jpg", [], 2)


def test_conflicting_labels_reject_every_copy_and_say_why():
    keeper, rejects, merged = dedup.resolve([_claim("a.jpg", 30), _claim("b.jpg", 30, "0")])
    assert keeper is None and merged == 0
    assert [(r["file_name"], r["reason"], r["input"]) for r in rejects] == [
        ("a.jpg", reasons.DUPLICATE_CONFLICT, "/i/a.jpg"),
        ("b.jpg", reasons.DUPLICATE_CONFLICT, "/i/b.jpg")]
    assert "same image bytes as b.jpg (age 30)" in rejects[0]["detail"]


def test_kept_follows_the_verdict_and_keeps_ids_without_one():
    verdicts = {"h1": "a.jpg", "h2": None}
    assert dedup.kept(verdicts, "h1", "a.jpg") and not dedup.kept(verdicts, "h1", "b.jpg")
    assert not dedup.kept(verdicts, "h2", "c.jpg")
    assert dedup.kept(verdicts, "h3", "d.jpg")
