"""Losses and the training-time age metric, for both heads. y_true is always the age [B].

Regression (output [B, 1] in years): MAE (the metric we report, robust to label noise), Huber
(MAE's robustness with a smooth minimum) or MSE. DEX (output [B, K] softmax over ages 0..K-1):
cross-entropy against the one-hot integer age, or KL divergence against a Gaussian label
distribution centred on the true age (DLDL, Gao et al. 2017): neighbouring ages look alike, so
the target spreads its mass over them. Keras applies sample weights and the reduction; under
tf.distribute it also divides by the GLOBAL batch, so every replica count gives the same loss.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer.model import expected_age

_EPS = 1e-7
# Age of the padding examples that fill the last validation batches (weight 0 in the loss).
PAD_AGE = -1.0


def _real(y_true):
    """1 for real examples, 0 for padding: the metrics ignore padding."""
    return tf.cast(tf.reshape(y_true, [-1]) >= 0, tf.float32)


def _combine(mask, sample_weight):
    return mask if sample_weight is None else mask * tf.reshape(
        tf.cast(sample_weight, tf.float32), [-1])


def label_distribution(age, num_classes: int, sigma: float):
    """Target distribution [B, K] over integer ages: Gaussian(age, sigma), or one-hot(round(age)).

    The Gaussian is evaluated at the integer ages and renormalised, so ages near 0 or K-1 keep a
    proper distribution rather than losing the mass that falls outside the range.
    """
    age = tf.reshape(tf.cast(age, tf.float32), [-1, 1])
    if sigma <= 0:
        index = tf.clip_by_value(tf.round(age[:, 0]), 0, num_classes - 1)
        return tf.one_hot(tf.cast(index, tf.int32), num_classes)
    ages = tf.range(num_classes, dtype=tf.float32)[None, :]
    density = tf.exp(-0.5 * tf.square((ages - age) / sigma))
    return density / tf.reduce_sum(density, axis=-1, keepdims=True)


def make_loss(name: str, head: str, *, num_classes: int = 0, dex_sigma: float = 0.0,
              huber_delta: float = 5.0, batch_size: int | None = None):
    """The compiled loss: sum(per-example loss x sample weight) / GLOBAL batch size.

    Why not Keras's default reduction: we want exactly "weighted sum over the global batch /
    global batch" on any number of replicas. With reduction="sum" Keras neither normalises nor
    divides by the replica count, so each replica returns its share of that total and
    tf.distribute's summed gradients are those of one device on the whole batch.
    """
    per_example = per_example_loss(name, head, num_classes=num_classes, dex_sigma=dex_sigma,
                                   huber_delta=huber_delta)
    if batch_size is None:
        return per_example
    return _SumOverFixedBatch(per_example, batch_size, name)


class _SumOverFixedBatch(keras.losses.Loss):
    def __init__(self, fn, batch_size: int, name: str):
        super().__init__(name=name, reduction="sum")
        self.fn, self.batch_size = fn, float(batch_size)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred) / self.batch_size


def per_example_loss(name: str, head: str, *, num_classes: int = 0, dex_sigma: float = 0.0,
                     huber_delta: float = 5.0):
    """fn(y_true age [B], y_pred) -> per-example loss [B]."""
    if head == "regression":
        def regression_loss(y_true, y_pred):
            error = tf.reshape(tf.cast(y_pred, tf.float32), [-1]) - tf.cast(y_true, tf.float32)
            if name == "mae":
                return tf.abs(error)
            if name == "mse":
                return tf.square(error)
            if name == "huber":
                abs_error = tf.abs(error)
                quadratic = tf.minimum(abs_error, huber_delta)
                return 0.5 * tf.square(quadratic) + huber_delta * (abs_error - quadratic)
            raise ValueError(f"--loss={name!r}: not a regression loss (mae, huber, mse)")
        regression_loss.__name__ = name
        return regression_loss
    if head == "dex":
        if name not in ("kl", "ce"):
            raise ValueError(f"--loss={name!r}: not a dex loss (kl, ce)")
        sigma = dex_sigma if name == "kl" else 0.0

        def dex_loss(y_true, y_pred):
            target = label_distribution(y_true, num_classes, sigma)
            probs = tf.clip_by_value(tf.cast(y_pred, tf.float32), _EPS, 1.0)
            cross_entropy = -tf.reduce_sum(target * tf.math.log(probs), axis=-1)
            if name == "ce":
                return cross_entropy
            # KL = CE - H(target); the entropy is constant in the weights but makes a perfect
            # prediction score 0, which keeps the logged loss interpretable.
            entropy = -tf.reduce_sum(target * tf.math.log(tf.maximum(target, _EPS)), axis=-1)
            return cross_entropy - entropy
        dex_loss.__name__ = name
        return dex_loss
    raise ValueError(f"--head={head!r}: unknown head")


class AgeMAE(keras.metrics.Mean):
    """Mean absolute error in years of the head's predicted age (logged as 'mae')."""

    def __init__(self, head: str, name: str = "mae", **kwargs):
        super().__init__(name=name, **kwargs)
        self.head = head

    def update_state(self, y_true, y_pred, sample_weight=None):
        error = tf.abs(expected_age(y_pred, self.head) - tf.reshape(
            tf.cast(y_true, tf.float32), [-1]))
        return super().update_state(error, sample_weight=_combine(_real(y_true), sample_weight))


class CumulativeScore(keras.metrics.Mean):
    """Share of predictions within `years` of the truth (CS@5, logged as 'cs5')."""

    def __init__(self, head: str, years: int = 5, name: str | None = None, **kwargs):
        super().__init__(name=name or f"cs{years}", **kwargs)
        self.head, self.years = head, years

    def update_state(self, y_true, y_pred, sample_weight=None):
        error = tf.abs(expected_age(y_pred, self.head) - tf.reshape(
            tf.cast(y_true, tf.float32), [-1]))
        hit = tf.cast(error <= self.years, tf.float32)
        return super().update_state(hit, sample_weight=_combine(_real(y_true), sample_weight))
