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
