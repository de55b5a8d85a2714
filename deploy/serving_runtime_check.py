"""Serve the exported SavedModel as TensorFlow Serving does, and compare with the eager path.

    python -m deploy.serving_runtime_check export --dir=DIR  # the project's TF: export, record
    python -m deploy.serving_runtime_check check --dir=DIR   # the serving runtime's TF: compare

TF Serving (and every Vertex prebuilt TF prediction image) loads a SavedModel with the TF1
session loader and feeds and fetches its SignatureDef's tensor names; ``run_v1`` does exactly
that. ``check`` also sends hostile PNGs and expects the in-graph size check's InvalidArgument. At
module level only TensorFlow and numpy are imported (the export side imports the trainer
lazily), so ``check`` runs on TF 2.15.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deploy.hostile_images import HOSTILE, flat_png  # noqa: E402

BACKBONES = ("tiny", "mobilenet_v3_small", "mobilenet_v3_small_minimalistic", "mobilenet_v3_large",
             "efficientnet_b0", "resnet50")
HEADS = ("regression", "dex")
IMAGE_SIZE = 32
MAX_AGE = 20


def run_v1(path: str, signature: str, inputs: dict) -> dict:
    """The signature's outputs through a TF1 session on a fresh graph (TF Serving's loader)."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        sig = meta.signature_def[signature]
        feeds = {sig.inputs[name].name: value for name, value in inputs.items()}
        return session.run({name: t.name for name, t in sig.outputs.items()}, feeds)


def run_eager(loaded, signature: str, inputs: dict) -> dict:
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def sample_inputs(seed: int = 0) -> dict:
    """Per signature, a batch: two noisy JPEGs of other sizes, and two float images."""
    rng = np.random.default_rng(seed)
    jpegs = [tf.io.encode_jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).numpy()
             for h, w in ((48, 40), (30, 64))]
    images = rng.uniform(0, 255, (2, IMAGE_SIZE + 8, IMAGE_SIZE, 3)).astype(np.float32)
    return {"serving_default": {"image_bytes": np.array(jpegs, dtype=object)},
            "predict_images": {"images": images}}


def export(out_dir: str) -> None:
    from contract.framing import Framing
    from trainer.export import export_saved_model
    from trainer.model import build_model

    inputs = sample_inputs()
    for backbone in BACKBONES:
        for head in HEADS:
            name = f"{backbone}_{head}"
            model = build_model(backbone=backbone, image_size=IMAGE_SIZE, head=head,
                                max_age=MAX_AGE, weights="none", initial_age=10.0)
            path = export_saved_model(model, os.path.join(out_dir, name), Framing(IMAGE_SIZE),
                                      head, MAX_AGE)
            loaded = tf.saved_model.load(path)
            np.savez(os.path.join(out_dir, f"{name}.npz"), **{
                f"{sig}/{out}": value for sig, feed in inputs.items()
                for out, value in run_eager(loaded, sig, feed).items()})
            print(f"exported {name} (TF {tf.__version__})")


def check(out_dir: str) -> int:
    """Every model in out_dir, both loaders: outputs equal to the export side's; hostile PNGs
    refused. Prints one JSON line per model; returns the number of failures."""
    inputs, failures = sample_inputs(), 0
    for name in sorted(f[:-4] for f in os.listdir(out_dir) if f.endswith(".npz")):
        path, result = os.path.join(out_dir, name), {"model": name, "tf": tf.__version__}
        expected = dict(np.load(path + ".npz"))
        try:
            loaded = tf.saved_model.load(path)
            for loader in ("v1_session", "eager"):
                got = {f"{sig}/{out}": value for sig, feed in inputs.items()
                       for out, value in serve(loader, path, loaded, sig, feed).items()}
                if sorted(got) != sorted(expected):
                    raise AssertionError(f"{loader}: outputs {sorted(got)} != "
                                         f"{sorted(expected)}")
                result[loader] = max(float(np.abs(got[k] - expected[k]).max()) for k in got)
            result["hostile_refused"] = hostile_refused(path, loaded)
            ok = (result["v1_session"] == result["eager"] == 0.0
                  and all(result["hostile_refused"].values()))
        except Exception as e:  # noqa: BLE001 - reported per model, the run goes on
            result["error"], ok = f"{type(e).__name__}: {e}"[:500], False
        result["ok"] = ok
        failures += not ok
        print(json.dumps(result))
    return failures


def serve(loader: str, path: str, loaded, signature: str, feed: dict) -> dict:
    if loader == "v1_session":
        return run_v1(path, signature, feed)
    return run_eager(loaded, signature, feed)


def hostile_refused(path: str, loaded) -> dict:
    """Per hostile file and loader: True if refused with InvalidArgument naming the limit."""
    out = {}
    for name, (width, height) in HOSTILE.items():
        feed = {"image_bytes": np.array([flat_png(width, height)], dtype=object)}
        for loader in ("v1_session", "eager"):
            try:
                serve(loader, path, loaded, "serving_default", feed)
                out[f"{name}/{loader}"] = False
            except tf.errors.InvalidArgumentError as e:
                out[f"{name}/{loader}"] = "max_pixels" in e.message or \
                    "max_aspect_ratio" in e.message
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["export", "check"])
    parser.add_argument("--dir", required=True, help="where the models and outputs go")
    args = parser.parse_args(argv)
    if args.command == "export":
        os.makedirs(args.dir, exist_ok=True)
        export(args.dir)
        return 0
    failures = check(args.dir)
    print(f"TF {tf.__version__}: {failures} model(s) failed" if failures else
          f"TF {tf.__version__}: every model served identically by the v1 session loader and "
          "eagerly, hostile PNGs refused")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
