"""Networks only: backbone (with its own input preprocessing inside the graph) + age head.

The model takes float32 images in 0..255, what the input pipeline yields and the export's decode
produces, and applies the backbone's own normalisation as its first layers, so serving cannot
drift from training. Build it inside ``strategy.scope()``. Heads: ``regression``, one linear
unit in years (not clamped: a clamp would kill the gradient of out-of-range guesses; export
clamps); ``dex`` (Rothe et al.), a softmax over the ages 0..max_age whose expected value is the
prediction (``expected_age``) and its spread the distribution's standard deviation (``age_std``:
the per-face uncertainty). The output layer computes in float32, stable under mixed precision.
"""

from __future__ import annotations

import os
import re
import tempfile

import keras
import tensorflow as tf

# Keras applications, with the layer-name prefix that starts each one's last block.
_LAST_BLOCK = {"resnet50": "conv5_block3_", "efficientnet_b0": "block7a_", "tiny": "block3_"}
BACKBONE_NAME = "backbone"
HEAD_NAME = "age"


@keras.saving.register_keras_serializable(package="face_age")
class CaffePreprocess(keras.layers.Layer):
    """ResNet50's ImageNet preprocessing ('caffe' mode): RGB -> BGR, minus the channel means.

    A layer rather than a Lambda around ``resnet50.preprocess_input`` so that the weights file
    and the SavedModel need no Python closure.
    """

    _MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, images):
        bgr = images[..., ::-1]
        return bgr - keras.ops.cast(keras.ops.convert_to_tensor(self._MEAN_BGR), bgr.dtype)


def _tiny_cnn(image_size: int) -> keras.Model:
    """A test-sized CNN (~20k parameters) with BatchNorm, shaped like a real backbone."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="tiny_rescale")(inputs)
    for i, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False,
                                name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


def _application(name: str, image_size: int, weights) -> keras.Model:
    shape = (image_size, image_size, 3)
    apps = keras.applications
    if name == "resnet50":
        inputs = keras.Input(shape)
        base = apps.ResNet50(include_top=False, weights=weights, input_shape=shape)
        return keras.Model(inputs, base(CaffePreprocess(name="caffe_preprocess")(inputs)),
                           name="resnet50")
    # MobileNetV3 and EfficientNet carry their preprocessing (rescaling) as their first layers.
    if name in ("mobilenet_v3_small", "mobilenet_v3_small_minimalistic"):
        # minimalistic: ReLU and no squeeze-excite. Its int8 TFLite model runs 1.7x faster than
        # float32 on a CPU with VNNI, where hard-swish makes the standard one's int8 slower.
        return apps.MobileNetV3Small(input_shape=shape, include_top=False, weights=weights,
                                     include_preprocessing=True,
                                     minimalistic=name.endswith("_minimalistic"))
    if name == "mobilenet_v3_large":
        return apps.MobileNetV3Large(input_shape=shape, include_top=False, weights=weights,
                                     include_preprocessing=True)
    if name == "efficientnet_b0":
        return apps.EfficientNetB0(input_shape=shape, include_top=False, weights=weights)
    raise ValueError(f"--backbone={name!r}: unknown backbone")


def local_weights_file(path: str) -> str:
    """A local copy of a weights file (gs:// or local), keeping its suffix (.h5/.weights.h5)."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"--weights={path!r}: no such weights file")
    if "://" not in path:
        return path
    suffix = ".weights.h5" if path.endswith(".weights.h5") else os.path.splitext(path)[1]
    fd, local = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    tf.io.gfile.copy(path, local, overwrite=True)
    return local


def build_backbone(name: str, image_size: int, weights: str = "none",
                   bn_momentum: float | None = 0.99) -> keras.Model:
    """The backbone: images (0..255) -> feature map, with its preprocessing inside."""
    keras_weights = "imagenet" if weights == "imagenet" else None
    if name == "tiny":
        if weights == "imagenet":
            raise ValueError("--weights=imagenet: the tiny backbone has no ImageNet weights")
        backbone = _tiny_cnn(image_size)
    else:
        backbone = _application(name, image_size, keras_weights)
    if weights not in ("imagenet", "none"):
        local = local_weights_file(weights)
        try:
            backbone.load_weights(local)
        except (ValueError, KeyError) as e:
            raise ValueError(f"--weights={weights!r} does not fit --backbone={name} at "
                             f"{image_size}px: {e}") from e
    if bn_momentum is not None:
        # Keras MobileNetV3 builds BN with momentum 0.999: over a short fine-tune the moving
        # statistics lag the weights and inference-mode validation MAE stays far above training
        # MAE (README, "precise BN"). A lower momentum narrows the lag but leaves a noisy EMA;
        # the trainer's precise BN (trainer.precise_bn) replaces the EMA before every validation.
        for layer in _all_layers(backbone):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
    backbone.name = BACKBONE_NAME
    return backbone


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def build_model(*, backbone: str, image_size: int, head: str, max_age: int,
                weights: str = "none", dropout: float = 0.2,
                bn_momentum: float | None = 0.99, initial_age: float = 0.0) -> keras.Model:
    """images float32 [B, S, S, 3] in 0..255 -> [B, 1] years (regression) or [B, K] probs (dex)."""
    base = build_backbone(backbone, image_size, weights, bn_momentum)
    inputs = keras.Input((image_size, image_size, 3), name="images", dtype="float32")
    x = base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    if head == "regression":
        # Start at the mean training age: otherwise the first epochs only learn that offset
        # (an MAE loss moves the bias by at most lr per step).
        outputs = keras.layers.Dense(
            1, dtype="float32", name=HEAD_NAME,
            bias_initializer=keras.initializers.Constant(initial_age))(x)
    elif head == "dex":
        x = keras.layers.Dense(max_age + 1, name="age_logits")(x)
        outputs = keras.layers.Activation("softmax", dtype="float32", name=HEAD_NAME)(x)
    else:
        raise ValueError(f"--head={head!r}: unknown head")
    return keras.Model(inputs, outputs, name=f"{backbone}_{head}")


def expected_age(outputs, head: str):
    """Model outputs -> predicted age [B] (the head's output or the softmax's expected value)."""
    outputs = tf.cast(outputs, tf.float32)
    if head == "regression":
        return tf.reshape(outputs, [-1])
    ages = tf.range(tf.shape(outputs)[-1], dtype=tf.float32)
    return tf.reduce_sum(outputs * ages, axis=-1)


def age_std(outputs, head: str):
    """dex outputs -> the standard deviation [B] of each face's age distribution, in years.

    sqrt(sum_k p_k (k - mean)^2); the centred form avoids E[k^2] - E[k]^2 cancelling in float32.
    Regression outputs carry no distribution, so there is no spread to report.
    """
    if head != "dex":
        raise ValueError(f"head={head!r}: only the dex head outputs a distribution (age_std)")
    outputs = tf.cast(outputs, tf.float32)
    ages = tf.range(tf.shape(outputs)[-1], dtype=tf.float32)
    mean = tf.reduce_sum(outputs * ages, axis=-1, keepdims=True)
    return tf.sqrt(tf.reduce_sum(outputs * tf.square(ages - mean), axis=-1))


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_NAME)


def last_block_start(backbone_name: str, backbone: keras.Model) -> int:
    """Index in ``backbone.layers`` where the last block begins (its layers and all after)."""
    names = [layer.name for layer in _flat_layers(backbone)]
    if backbone_name.startswith("mobilenet_v3"):
        blocks = [int(m.group(1)) for n in names if (m := re.match(r"expanded_conv_(\d+)_", n))]
        prefix = f"expanded_conv_{max(blocks)}_"
    else:
        prefix = _LAST_BLOCK[backbone_name]
    for i, name in enumerate(names):
        if name.startswith(prefix):
            return i
    raise ValueError(f"no layer named {prefix}* in backbone {backbone_name}")


def _flat_layers(backbone: keras.Model) -> list:
    """The backbone's layers with nested application models (ResNet50's wrapper) flattened."""
    out = []
    for layer in backbone.layers:
        if isinstance(layer, keras.Model):
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def set_trainable(model: keras.Model, backbone_name: str, stage: str, unfreeze="all",
                  train_bn: bool = True) -> None:
    """Marks what trains in a stage. Recompile afterwards (Keras collects variables at compile).

    head: backbone frozen. In Keras 3 a non-trainable BatchNormalization runs in inference mode,
    so its moving statistics (ImageNet's, or the last stage's) are used and not updated.
    fine_tune: the whole backbone, its last block, or its last K layers train; with
    train_bn=False every BN layer stays frozen in inference mode.
    """
    backbone = backbone_of(model)
    layers = _flat_layers(backbone)
    if stage == "head":
        backbone.trainable = False
        return
    if stage != "fine_tune":
        raise ValueError(f"unknown stage {stage!r}")
    backbone.trainable = True
    if unfreeze == "all":
        start = 0
    elif unfreeze == "last_block":
        start = last_block_start(backbone_name, backbone)
    else:
        start = max(0, len(layers) - int(unfreeze))
    for i, layer in enumerate(layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= start and (train_bn or not is_bn)
