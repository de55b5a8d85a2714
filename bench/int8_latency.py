"""Is int8 faster than float32 in TFLite on this CPU, with and without hard-swish? Latency only.

    python -m bench.int8_latency [--image_size=96] [--repeats=300]

MobileNetV3-Small, standard (hard-swish, squeeze-excite) and ``minimalistic`` (ReLU, neither),
random weights with a DEX-sized head (121 ages), each converted to float32 and to int8
(calibrated on random images: the ranges do not matter for speed). One image per call, 1 thread,
the default interpreter (XNNPACK), calls interleaved; prints the median and minimum per variant.
Accuracy is not measured here: bench.edge_model does that on a trained model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _network(size: int, minimalistic: bool):
    import keras

    inputs = keras.Input((size, size, 3))
    base = keras.applications.MobileNetV3Small(
        input_shape=(size, size, 3), include_top=False, weights=None,
        include_preprocessing=True, minimalistic=minimalistic)
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs))
    return keras.Model(inputs, keras.layers.Dense(121, activation="softmax")(pooled))


def _convert(model, size: int, int8: bool) -> bytes:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)] for _ in range(50))
    return converter.convert()


def main(argv=None) -> None:
    import tensorflow as tf

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--repeats", type=int, default=300)
    args = p.parse_args(argv)
    size = args.image_size
    face = np.random.default_rng(1).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    runners = {}
    for minimalistic in (False, True):
        model = _network(size, minimalistic)
        for int8 in (False, True):
            interpreter = tf.lite.Interpreter(model_content=_convert(model, size, int8),
                                              num_threads=1)
            interpreter.allocate_tensors()
            index = interpreter.get_input_details()[0]["index"]
            kind = "minimalistic" if minimalistic else "standard"
            name = f"{kind} {'int8' if int8 else 'float32'}"
            runners[name] = (interpreter, index)
    times = {name: [] for name in runners}
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped
        for name, (interpreter, index) in runners.items():
            start = time.perf_counter()
            interpreter.set_tensor(index, face)
            interpreter.invoke()
            times[name].append(time.perf_counter() - start)
    print(f"MobileNetV3-Small at {size} px, 1 thread, {args.repeats} single-image calls")
    print("| variant | ms median | ms min | int8 vs float32 (by min) |")
    print("|---|---|---|---|")
    for name, t in times.items():
        t = np.array(t[1:]) * 1000
        pair = name.split()[0]
        ref = np.min(times[f"{pair} float32"][1:]) * 1000
        print(f"| {name} | {np.median(t):.2f} | {t.min():.2f} | {ref / t.min():.2f}x |")


if __name__ == "__main__":
    main()
