"""Test helper: tiny Keras models with fixed weights, so the expected ages are known exactly."""

import keras
import numpy as np


def mean_colour_model(size: int, left_half: bool = False) -> keras.Model:
    """age = 80 * mean(pixel) / 255 + 5 over the whole image, or over its left half only.

    The left-half variant predicts differently for an image and its mirror, so a test can tell
    whether flip test-time augmentation really averaged the two.
    """
    inputs = keras.Input((size, size, 3))
    x = inputs
    if left_half:
        x = keras.layers.Cropping2D(((0, 0), (0, size // 2)))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(1)
    outputs = dense(x)
    dense.set_weights([np.full((3, 1), 80.0 / (255.0 * 3)), np.array([5.0])])
    return keras.Model(inputs, outputs)


def grey_dex_model(size: int) -> keras.Model:
    """A dex model over ages 0..2 with logits [0, t, 0], t = ln(8) * mean(pixel) / 255.

    p = [1, e^t, 1] / (2 + e^t): the age is always 1 and its std sqrt(2 / (2 + e^t)), from
    sqrt(2/3) for a black image down to sqrt(0.2) for a white one (brighter = more confident).
    """
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(3)
    logits = dense(x)
    kernel = np.zeros((3, 3))
    kernel[:, 1] = np.log(8.0) / (255.0 * 3)
    dense.set_weights([kernel, np.zeros(3)])
    return keras.Model(inputs, keras.layers.Softmax()(logits))


def grey_dex_std(grey: float) -> float:
    return float(np.sqrt(2.0 / (2.0 + 8.0 ** (grey / 255.0))))


def near_constant_model(size: int) -> keras.Model:
    """A regression model with one layer whose output barely varies: two copies of the mean
    pixel, weighted +1 and -(1 - 1e-5). int8 calibration gives that layer an output scale so
    small against its input's that XNNPACK refuses it. age = 80 * mean(pixel) / 255 + 5 (plus
    1e-5 * mean(pixel), the near-constant layer's part)."""
    inputs = keras.Input((size, size, 3))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    twins = keras.layers.Dense(2)
    pair = twins(mean)
    twins.set_weights([np.full((3, 2), 1.0 / 3), np.zeros(2)])
    cancel = keras.layers.Dense(1)
    tiny = cancel(pair)
    cancel.set_weights([np.array([[1.0], [-(1.0 - 1e-5)]]), np.zeros(1)])
    head = keras.layers.Dense(1)
    # Added, not concatenated: a concatenation's inputs share one scale, which would hide it.
    age = keras.layers.Add()([head(mean), tiny])
    head.set_weights([np.full((3, 1), 80.0 / (255.0 * 3)), np.array([5.0])])
    return keras.Model(inputs, age)
