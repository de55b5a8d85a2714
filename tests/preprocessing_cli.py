"""Test helpers: small datasets and real ``python -m preprocessing.run`` processes."""

import hashlib
import json
import os
import sys

from PIL import Image

from contract import schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32


def png(path, size=(32, 32), colour=(200, 120, 40)) -> bytes:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")
    with open(path, "rb") as f:
        return f.read()


def labels_csv(path, rows, header="file_name,real_age"):
    with open(path, "w", newline="") as f:
        f.write(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def cli(*args):
    """argv of a real ``python -m preprocessing.run`` process."""
    return [sys.executable, "-m", "preprocessing.run", f"--image_size={SIZE}", *args]


def environ(**extra):
    return dict(os.environ, PYTHONPATH=ROOT, **extra)


def dead_letters(out):
    with open(os.path.join(out, schema.ERRORS_DIR, "errors.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def record_ids_and_names(out):
    import tensorflow as tf

    ids, names = [], []
    for n in sorted(os.listdir(out)):
        if "-of-" in n:
            for r in tf.data.TFRecordDataset(os.path.join(out, n)):
                example = tf.train.Example.FromString(r.numpy())
                ids.append(example.features.feature[schema.ID].bytes_list.value[0].decode())
                names.append(example.features.feature[schema.FILENAME].bytes_list.value[0]
                             .decode())
    return ids, names


def sha_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
