"""The Beam job's output, byte for byte, against digests committed here (a golden).

Same inputs must give the same shards, whatever the code around them is refactored into. The
digests were taken from the job before a refactor; a change that alters a shard's bytes must
say why and regenerate them: ``PYTHONPATH=. python tests/test_preprocessing_golden.py``.
The sample is JPEG-encoded by Pillow, so its digest is checked first: a new Pillow or numpy
changes the inputs, not the job.
"""

import hashlib
import json
import os
import sys

import pytest

from contract import schema
from preprocessing import run as run_module
from preprocessing import synthetic

INPUT = "85267cc86b5f5ec28db18e3feb34933aeeb808cafd21143eec6cdd326cc5aac9"
# shard -> (sha256 of its bytes, sha256 of its records as TensorFlow reads them)
SHARDS = {
    "test-00000-of-00002": (
        "ff7db17c0ab15810571d966ba9f3ea8ed9d5f2859318347afbf2c58b5b1c63ca",
        "ed4b00eb171ae0ab8dd46f00882f70d4d03a1ff2acfc42bea0226b21ebe97ac7"),
    "test-00001-of-00002": (
        "ba54965947e6c4f80b9634b4ff48c416839a724feaef459563aa4bf7b21e7fe9",
        "ea065dd00d821fa9d61c129c8b2fbe04547879e7aec92ee4ca644a01f2933c4b"),
    "train-00000-of-00002": (
        "fe195af518fad87db78709926048eee124e89dc066cd9ba98e483693f595df45",
        "d1381e7da61285dc98cc1b6e05036c66a237cc2f7f25f35281a0253285c984ba"),
    "train-00001-of-00002": (
        "024578bc677e2b15a7b30a55197a50f2bece3391f9f66c40c9a39b6f7057feed",
        "5948c004d20b155b9884330f2935ba27bcd5246f7c95d0d6e59bfa923ec55031"),
    "validation-00000-of-00002": (
        "7cbfb3528c070cab7df2fadd8dea9ffad49395a54da41904c4ca6a8ef24d31eb",
        "852b87aebf387c2fc77501f2da0660cd336aad1f1d8be15f98c4deba65469e9c"),
    "validation-00001-of-00002": (
        "cfd678b640eac4f6dcd9dbd298718ff2cd22227a5b541c89ba77bc5a4c5fe60f",
        "02aa0326465b945696ffd36437ca7935936dd9d08b24468fb1b5bad8aac867b8"),
}
TFDS = {
    "dataset_info.json": "f12d2113b280ce7387e0091bd114b4c251a23696af6c355d9e31b220fff33f82",
    "features.json": "fc7e23cfc5e0ae6b1a0e9d952fce29c4f9cd43cd1d3425883de70dfc4c7219c3",
}
ERRORS = "1ee61e61c221d3afced9211443ba2c0d62ff6cc6131755cc8923c567ee2bd14b"
STATS = "9b4aaccc0ca4313366dcd5c99894c69950e980380db3eff65ee3bee95b44a1b9"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sample(directory):
    # Broken entries and duplicates too: dead letters and merging decide which records remain.
    return synthetic.generate(directory, num_images=24, image_size=32, seed=12,
                              corrupt_fraction=0.25, duplicate_fraction=0.1)


def _input_digest(sample) -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(sample.images_dir)):
        with open(os.path.join(sample.images_dir, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    with open(sample.labels_csv, "rb") as f:
        digest.update(f.read())
    return digest.hexdigest()


def _records_digest(path) -> str:
    """The shard's records as TensorFlow's own reader returns them, in order."""
    import tensorflow as tf

    digest = hashlib.sha256()
    for record in tf.data.TFRecordDataset(path):
        payload = record.numpy()
        digest.update(len(payload).to_bytes(8, "little") + payload)
    return digest.hexdigest()


def _digests(sample, out, stats) -> dict:
    def read(*parts):
        with open(os.path.join(out, *parts), "rb") as f:
            return f.read()

    shards = sorted(n for n in os.listdir(out) if "-of-" in n)
    # Dead letters name the inputs by path: the sample's folder differs from run to run.
    errors = sorted(line.replace(sample.output_dir, "SAMPLE") for line in
                    read(schema.ERRORS_DIR, "errors.jsonl").decode().splitlines())
    # The parts of stats.json that the records decide (new fields may be added beside them).
    counted = {k: stats[k] for k in ("splits", "rejects", "duplicates_merged", "inputs",
                                     "blur_deciles")}
    return {
        "shards": {n: _sha(read(n)) for n in shards},
        "records": {n: _records_digest(os.path.join(out, n)) for n in shards},
        "tfds": {n: _sha(read(n)) for n in ("dataset_info.json", "features.json")},
        "errors": _sha("\n".join(errors).encode()),
        "stats": _sha(json.dumps(counted, sort_keys=True).encode()),
    }


def _run(directory) -> tuple[str, dict]:
    sample = _sample(os.path.join(directory, "in"))
    out = os.path.join(directory, "out")
    stats = run_module.run([f"--labels={sample.labels_csv}", f"--images={sample.images_dir}",
                            f"--output_dir={out}", "--image_size=24", "--num_shards=2",
                            "--runner=DirectRunner"])
    return _input_digest(sample), _digests(sample, out, stats)


def test_the_same_inputs_give_the_committed_bytes(tmp_path):
    inputs, digests = _run(str(tmp_path))
    if inputs != INPUT:
        pytest.fail("the synthetic sample itself changed (Pillow or numpy version?), so the "
                    "golden cannot say anything about the job: regenerate it (module docstring)")
    assert digests["shards"] == {n: shard for n, (shard, _) in SHARDS.items()}
    assert digests["records"] == {n: records for n, (_, records) in SHARDS.items()}
    assert digests["tfds"] == TFDS
    assert digests["errors"] == ERRORS
    assert digests["stats"] == STATS


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        inputs, digests = _run(tmp)
    json.dump({"INPUT": inputs, **digests}, sys.stdout, indent=4)
