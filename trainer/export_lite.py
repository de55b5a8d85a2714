"""A TFLite model for phones and small devices, from a trained model.

    python -m trainer.export_lite --model=MODEL_DIR --quantize=none|float16|int8 \\
        [--output=FILE.tflite] [--data_dir=DIR] [--calibration_examples=200]

Default output: MODEL_DIR/model_QUANTIZE.tflite, with FILE.json beside. The network is rebuilt
from config.json with the SavedModel's weights and checked against its predict_images before
writing. ``int8`` calibrates on training records (the head stays float); ``float16`` halves the
weights; ``none`` is float32. Input (framed faces) and outputs stay float32: see trainer.lite.
"""

from __future__ import annotations

import json
import sys

import numpy as np

QUANTIZATIONS = ("none", "float16", "int8")
CHECK_TOLERANCE = 1e-2  # years: the rebuilt network must predict what the SavedModel predicts


def keras_from_export(model: str):
    """(Keras model, config dict, loaded SavedModel): the trained network, rebuilt with the
    SavedModel's own variables (matched by name, every weight exactly once)."""
    import tensorflow as tf

    from contract import files
    from trainer.model import build_model
    from trainer.predict import locate_model

    location = locate_model(model)
    config = files.read_json(f"{location.model_dir}/config.json") if location.model_dir else None
    if not config or "backbone" not in config:
        raise FileNotFoundError(f"--model={model!r}: needs the trainer's MODEL_DIR (its "
                                "config.json names the backbone to rebuild)")
    loaded = tf.saved_model.load(location.saved_model)
    if not hasattr(loaded, "model_variables"):
        raise ValueError(f"--model={model!r}: the SavedModel does not list its variables "
                         "(exported by an older trainer.export); export it again")
    head, size, max_age = config["head"], int(loaded.image_size.numpy()), \
        int(loaded.max_age.numpy())
    network = build_model(backbone=config["backbone"], image_size=size, head=head,
                          max_age=max_age, weights="none", dropout=0.0)
    saved = {v.name.rsplit(":", 1)[0]: v for v in loaded.model_variables}
    weights = [w for w in network.weights if "seed_generator" not in w.path]
    missing = [w.path for w in weights if w.path not in saved]
    if missing or len(weights) != len(saved):
        raise ValueError(f"--model={model!r}: the SavedModel's {len(saved)} variables do not "
                         f"match the {len(weights)} of a rebuilt {config['backbone']} "
                         f"(missing: {missing[:3]})")
    for w in weights:
        w.assign(saved[w.path].numpy())
    _check_against(network, loaded, head, max_age, size)
    return network, {**config, "image_size": size, "max_age": max_age,
                     "model_dir": location.model_dir}, loaded


def _check_against(network, loaded, head: str, max_age: int, size: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, size, size, 3)).astype(np.float32)
    served = loaded.signatures["predict_images"](images=images)
    ours = serving_function(network, head, max_age, size)(images)
    diff = float(np.max(np.abs(ours["age"].numpy() - served["age"].numpy())))
    if diff > CHECK_TOLERANCE:
        raise ValueError(f"the rebuilt network predicts up to {diff:.3f} years away from the "
                         "SavedModel: not the same network")


def serving_function(network, head: str, max_age: int, size: int):
    """The TFLite graph: framed faces float32 [N, S, S, 3] -> age [N] (+ age_std [N] for dex)."""
    import tensorflow as tf

    from trainer.model import age_std, expected_age

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                                name="images")])
    def serve(images):
        probs = network(images, training=False)
        out = {"age": tf.clip_by_value(expected_age(probs, head), 0.0, float(max_age))}
        if head == "dex":
            out["age_std"] = age_std(probs, head)
        return out

    return serve


def representative_images(data_dir: str, size: int, count: int):
    """A generator of ``count`` training faces [1, S, S, 3] (int8 calibration)."""
    from trainer import data

    if count < 1:
        raise ValueError(f"--calibration_examples={count}: must be >= 1")

    def generate():
        ds = data.build_dataset(data_dir, "train", batch_size=1, image_size=size,
                                training=False, shuffle_buffer=1, deterministic=True)
        for images, *_ in ds.take(count):
            yield {"images": images}

    return generate


def convert(network, *, head: str, max_age: int, image_size: int, quantize: str,
            representative=None, float_head: bool = True) -> bytes:
    """The .tflite bytes for one quantization (``representative``: needed for int8).

    int8 with ``float_head`` keeps the ops after the last fully connected layer in float32
    (dex: softmax, expected age and std; regression: the output layer and clamp): an int8
    softmax rounds every probability to 1/256 and drops the tail that the expectation and the
    std are made of, and an int8 age has steps of max_age / 255 years.
    """
    import tensorflow as tf

    from trainer.export import captured_variables

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize={quantize!r}: must be one of {', '.join(QUANTIZATIONS)}")
    function = serving_function(network, head, max_age, image_size).get_concrete_function()
    # The converter saves what it is given and reads the variables back: as in trainer.export,
    # the tf.Variables the function reads must be tracked as themselves (Keras 3 variables
    # would be saved as copies the function never reads, and convert to nothing).
    holder = tf.Module()
    holder.model_variables = captured_variables([function])

    def converter_for(quantize: str):  # one conversion per converter (a second one fails)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], holder)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = representative
        return converter

    if quantize == "int8":
        if representative is None:
            raise ValueError("--quantize=int8 needs calibration images (training records)")
        return _int8(converter_for, head, representative, float_head)
    return converter_for(quantize).convert()


def _int8(converter_for, head: str, representative, float_head: bool) -> bytes:
    """int8 quantization with the head's ops (head_ops of the float graph, if ``float_head``)
    and every op XNNPACK would refuse (xnnpack_refused) left in float32."""
    from trainer import lite

    keep_float = head_ops(lite.interpreter(converter_for("none").convert()), head) \
        if float_head else []
    content = _int8_keeping(converter_for, representative, keep_float)
    # Keeping an op in float moves the quantization of its neighbours: check again, a few times.
    for _ in range(MAX_FLOAT_ROUNDS):
        refused = xnnpack_refused(content)
        if not refused:
            return content
        keep_float += refused
        content = _int8_keeping(converter_for, representative, keep_float)
    raise ValueError(f"int8: XNNPACK still refuses {xnnpack_refused(content)} after keeping "
                     f"{len(keep_float)} ops in float; use --quantize=float16")


def _int8_keeping(converter_for, representative, keep_float: list[str]) -> bytes:
    import tensorflow as tf

    if not keep_float:
        return converter_for("int8").convert()

    def as_lists():  # the debugger feeds lists, the converter dicts
        for item in representative():
            yield list(item.values())

    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep_float)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter_for("int8"), debug_dataset=as_lists, debug_options=options)
    return debugger.get_nondebug_quantized_model()


# XNNPACK, TFLite's default CPU delegate, refuses a quantized convolution or fully connected op
# whose requantization scale (input scale x filter scale / output scale, per channel) is
# outside [2**-32, 256), and then the interpreter cannot start at all ("failed to prepare").
# Calibration gives such a scale to an op whose output barely varies over the calibration faces.
XNNPACK_REQUANT_RANGE = (2.0**-32, 256.0)
_FILTERED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
MAX_FLOAT_ROUNDS = 3


def xnnpack_refused(content: bytes) -> list[str]:
    """Output tensor names of the int8 ops in a .tflite whose requantization scale XNNPACK
    refuses (XNNPACK_REQUANT_RANGE)."""
    import tensorflow as tf

    # Without the default delegate: the model must be inspectable even where XNNPACK fails.
    interpreter = tf.lite.Interpreter(
        model_content=content,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType
        .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def scales(index):
        return tensors[index]["quantization_parameters"]["scales"]

    low, high = XNNPACK_REQUANT_RANGE
    refused = []
    for op in interpreter._get_ops_details():  # the only per-op listing the Python API has
        if op["op_name"] not in _FILTERED_OPS:
            continue
        data, weights, out = op["inputs"][0], op["inputs"][1], op["outputs"][0]
        if op["op_name"] == "TRANSPOSE_CONV":  # inputs: output shape, weights, data
            data, weights = op["inputs"][2], op["inputs"][1]
        if tensors[out]["dtype"] != np.int8 or not len(scales(out)) or not len(scales(data)):
            continue
        ratio = scales(data)[0] * scales(weights) / scales(out)[0]
        if ratio.min() < low or ratio.max() >= high:
            refused.append(tensors[out]["name"])
    return refused


def head_ops(interpreter, head: str) -> list[str]:
    """Output tensor names of the ops after the last FULLY_CONNECTED (dex) or from it on
    (regression), in a TFLite model."""
    ops = interpreter._get_ops_details()  # the only per-op listing the Python API has
    last = max(i for i, op in enumerate(ops) if op["op_name"] == "FULLY_CONNECTED")
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    first = last + 1 if head == "dex" else last
    return [names[t] for op in ops[first:] for t in op["outputs"]]


def export_lite(model: str, quantize: str, output: str | None = None,
                data_dir: str | None = None, calibration_examples: int = 200,
                float_head: bool = True) -> str:
    """Writes FILE.tflite and FILE.json (trainer.lite); returns the .tflite path."""
    from contract import files
    from trainer import lite

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize={quantize!r}: must be one of {', '.join(QUANTIZATIONS)}")
    if output is not None and not lite.is_lite(output):
        raise ValueError(f"--output={output!r}: must end in {lite.SUFFIX}")
    network, config, loaded = keras_from_export(model)
    size, head, max_age = config["image_size"], config["head"], config["max_age"]
    output = output or f"{config['model_dir']}/model_{quantize}{lite.SUFFIX}"
    data_dir = data_dir or config.get("data_dir")
    representative = (representative_images(data_dir, size, calibration_examples)
                      if quantize == "int8" else None)
    content = convert(network, head=head, max_age=max_age, image_size=size, quantize=quantize,
                      representative=representative, float_head=float_head)
    _check_runs(content, size, quantize)
    from trainer.framing import read_framing

    served = read_framing(loaded)
    info = {**served.to_dict(), "image_size": size, "head": head, "max_age": max_age,
            "backbone": config["backbone"], "quantize": quantize, "source": model,
            "input": f"{lite.INPUT}: float32 [N, {size}, {size}, 3], RGB 0..255, framed "
            f"(resize={served.resize}, margin={served.margin:g})",
            "outputs": ["age"] + (["age_std"] if head == "dex" else [])}
    if quantize == "int8":
        info["calibration"] = {"data_dir": data_dir, "split": "train",
                               "examples": calibration_examples}
        info["float_head"] = float_head
    files.write_bytes(output, content)
    files.write_bytes(lite.info_path(output), json.dumps(info, indent=2).encode("utf-8"))
    return output


def _check_runs(content: bytes, size: int, quantize: str) -> None:
    """A model that TFLite's default interpreter (XNNPACK included) cannot start is not written."""
    from trainer import lite

    try:
        runner = lite.interpreter(content).get_signature_runner(lite.SIGNATURE)
        runner(**{lite.INPUT: np.zeros((1, size, size, 3), np.float32)})
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"--quantize={quantize}: the converted model does not run in TFLite's "
                         f"default interpreter: {e}") from e


def main(argv):
    from absl import flags

    del argv
    f = flags.FLAGS
    try:
        path = export_lite(f.model, f.quantize, f.output, f.data_dir, f.calibration_examples,
                           f.int8_float_head)
    except (FileNotFoundError, ValueError) as e:
        print(f"trainer.export_lite: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model", None, "The trainer's MODEL_DIR (config.json + saved_model/).")
    flags.DEFINE_enum("quantize", "none", list(QUANTIZATIONS), "Weights (and, for int8, "
                      "activations) precision.")
    flags.DEFINE_string("output", None, "The .tflite to write; default "
                        "MODEL_DIR/model_QUANTIZE.tflite.")
    flags.DEFINE_string("data_dir", None, "int8: records to calibrate on (train split); default "
                        "config.json's data_dir.")
    flags.DEFINE_integer("calibration_examples", 200, "int8: training faces to calibrate on.")
    flags.DEFINE_bool("int8_float_head", True, "int8: keep the head (softmax, expected age and "
                      "std; a regression output) in float32.")
    flags.mark_flags_as_required(["model"])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
