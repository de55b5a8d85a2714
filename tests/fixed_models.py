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
