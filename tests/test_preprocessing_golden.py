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
        "4b0ce6e3598806c07e144e028040237d84ec8bf76e1bc20e099d8f4463b5a0d0",
        "a3e46f31184f3c2dd8a352439cfdaf7deb0d882e78c32ccd37bba15f6e53ac2a"),
    "test-00001-of-00002": (
        "8115174fe033dee4979b4530a3d90b0b0542846be4659785218e9f00b14b12a5",
        "404bfb33dac215ef7d56a268ab5c6705ece006ccc9f6bcaea35f035b2779dbad"),
    "train-00000-of-00002": (
        "94af033916a3786f4e7b7605d5d5ecfd70f3a48ffb8f07e0e12b943382ac2415",
        "8f53f90a0b4837146883e742033bcbe7f37bb26d1cf63e5134f444df3e47b463"),
    "train-00001-of-00002": (
        "3f353b8d1542bb7904c0ff4d0fdc0cdc0e421da667ac133f77205dc173edc468",
        "ec008c7a6803203bb0dd15a5a8fe77464f3f3a64598188244b9888b818ff65d7"),
    "validation-00000-of-00002": (
        "01726663f2c82ec1e02233ce983917ff66e7d5b13f4eeafa26d70f493522ae13",
        "2bf52768dc9757305b4fc1dd4dcd042e6e4dae39ba35b809e39788051b284715"),
    "validation-00001-of-00002": (
        "f9103962f34fdfe9f87fa30ec2ff43420177c9cbf61024bc8ee5413c6b4a15cd",
        "5537050a6816e5fc6691f33887f51d757cc2c74093dd81815c58e6eae6f1dde9"),
}
TFDS = {
    "dataset_info.json": "50bbcd74ae94aed27ea85bb6e55a7a6a5b72452dd3c239d91a2277a1f99ce27e",
    "features.json": "1bbe8d683ddc41b829f478dbbf688c9699a046c0a563dfeaede55d039b0a130d",
}
ERRORS = "1ee61e61c221d3afced9211443ba2c0d62ff6cc6131755cc8923c567ee2bd14b"
STATS = "9caf7073ba0e7cd983e9939b1e5ea4d8584b52a075410d32267d32125b9f5b52"


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
                            f"--output_dir={out}", "--image_size=32", "--num_shards=2",
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
