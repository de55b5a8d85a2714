"""The phone model beside the SavedModel, in one run: accuracy and single-image latency.

    python -m bench.edge_model --model=MODEL_DIR [--split=validation] [--threads=1]

Writes to --output_dir: one .tflite per --quantize (trainer.export_lite; int8 calibrated on
--calibration_examples training records), and for the SavedModel and each .tflite the full
trainer.evaluate report on --split (OUT/eval_NAME/). Latency: one framed face per call, every
variant called in turn --repeats times (so the machine's load spreads evenly over them), median
and minimum per variant; TensorFlow and the interpreters get --threads threads. For int8 it
lists the ops left in float (the per-op check); ``int8_all`` is int8 with the head quantized too
(export_lite --noint8_float_head).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def float_ops(path: str) -> collections.Counter:
    """Op types of a TFLite model that compute in float32 (QUANTIZE/DEQUANTIZE aside)."""
    import numpy as np

    from trainer import lite

    interpreter = lite.interpreter(path)
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    out = collections.Counter()
    for op in interpreter._get_ops_details():  # the only per-op listing the Python API has
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(tensors.get(i) == np.float32 for i in op["outputs"]):
            out[op["op_name"]] += 1
    return out


def partitions(path: str, threads: int) -> int:
    """How many pieces the default (XNNPACK) delegate runs: ops it cannot take split the graph,
    and each piece boundary costs a hand-over to TFLite's own kernels."""
    from trainer import lite

    interpreter = lite.interpreter(path, threads)
    interpreter.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="The trainer's MODEL_DIR.")
    p.add_argument("--data_dir", default=None, help="Default: config.json's data_dir.")
    p.add_argument("--split", default="validation")
    p.add_argument("--output_dir", default="bench_out/edge_model")
    p.add_argument("--quantize", default="none,float16,int8,int8_all")
    p.add_argument("--calibration_examples", type=int, default=200)
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=64)
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from contract import files
    from trainer import data, evaluate, export_lite, lite
    from trainer.predict import load_predict_fn, locate_model

    config = files.read_json(f"{args.model.rstrip('/')}/config.json") or {}
    data_dir = args.data_dir or config.get("data_dir")
    out = args.output_dir.rstrip("/")
    variants = {"saved_model": args.model}
    for q in args.quantize.split(","):  # int8_all: int8 head too (--noint8_float_head)
        t = time.time()
        variants[f"tflite_{q}"] = export_lite.export_lite(
            args.model, q.removesuffix("_all"), f"{out}/model_{q}.tflite", data_dir,
            args.calibration_examples, float_head=not q.endswith("_all"))
        print(f"exported {q} in {time.time() - t:.0f} s", flush=True)

    rows = {}
    for name, path in variants.items():
        t = time.time()
        result = evaluate.evaluate(path, data_dir, args.split, f"{out}/eval_{name}",
                                   batch_size=args.batch_size, worst=0)
        rows[name] = {"mae": result["overall"]["mae"], "cs@5": result["overall"]["cs@5"],
                      "faces": result["examples"], "uncertainty": result.get("uncertainty"),
                      "mb": _megabytes(path)}
        print(f"evaluated {name} in {time.time() - t:.0f} s: MAE {rows[name]['mae']:.3f}",
              flush=True)

    size = lite.read_info(variants[f"tflite_{args.quantize.split(',')[0]}"])["image_size"]
    face = next(iter(data.build_dataset(data_dir, args.split, batch_size=1, image_size=size,
                                        training=False)))[0].numpy()
    fns = {name: (lite.load_predict_fn(path, args.threads) if lite.is_lite(path)
                  else load_predict_fn(locate_model(path).saved_model))
           for name, path in variants.items()}
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn(face)  # warm-up: tracing, allocation
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(face)
            times[name].append(time.perf_counter() - t)
    for name in fns:
        rows[name]["ms"] = 1000 * float(np.median(times[name]))
        rows[name]["min_ms"] = 1000 * float(np.min(times[name]))
        if lite.is_lite(variants[name]):
            rows[name]["delegate_partitions"] = partitions(variants[name], args.threads)
    report(rows, args, float_ops(variants["tflite_int8"]) if "tflite_int8" in variants else None,
           out)


def _megabytes(path: str) -> float:
    from trainer import lite

    if lite.is_lite(path):
        return os.path.getsize(path) / 1e6
    root = f"{path.rstrip('/')}/saved_model"
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root)
               for f in fs) / 1e6


def report(rows: dict, args, int8_float_ops, out: str) -> None:
    base = rows["saved_model"]
    ref_float = rows.get("tflite_none", base)
    print(f"\n{args.model} on {args.split} ({base['faces']} faces), {args.threads} thread(s), "
          f"median of {args.repeats} single-image calls, {os.cpu_count()} CPU cores")
    print("| variant | MB | MAE | ΔMAE vs SavedModel | MAE drop @80% | ms/image median (min) | "
          "speed-up vs SavedModel | vs TFLite float32 (by min) | delegate pieces |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        drop = (r["uncertainty"] or {}).get("mae_drop_at_80")
        print(f"| {name} | {r['mb']:.1f} | {r['mae']:.3f} | {r['mae'] - base['mae']:+.3f} | "
              f"{'-' if drop is None else f'{100 * drop:.1f}%'} | {r['ms']:.2f} "
              f"({r['min_ms']:.2f}) | {base['ms'] / r['ms']:.2f}x | "
              f"{ref_float['ms'] / r['ms']:.2f}x ({ref_float['min_ms'] / r['min_ms']:.2f}x) | "
              f"{r.get('delegate_partitions', '-')} |")
    if int8_float_ops is not None:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(int8_float_ops.items())) or "none"
        print(f"int8 ops computing in float32: {listed}")
    with open(f"{out}/edge_model.json", "w") as f:
        json.dump({"rows": rows, "int8_float_ops": dict(int8_float_ops or {}),
                   "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
