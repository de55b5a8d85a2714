"""Precise BatchNorm: moving statistics re-estimated as a true average over training batches.

BatchNorm's moving averages lag weights that change, so on short runs inference mode normalises
with statistics the network no longer produces (README: "BatchNorm statistics"); a lower momentum
does not fix it, as single batches are too noisy. PreciseBN (Wu & Johnson 2021): with the weights
fixed, forward N batches in training mode with every BN layer at momentum 0 and synchronized
moments (the GLOBAL batch's statistics, all-reduced over replicas and workers); the host averages
the N values and assigns them, so every replica ends identical. Both switches are attributes Keras
reads when tracing, so they are set before the recalibration step is traced and restored after.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf


def _walk(layer):
    for sub in getattr(layer, "layers", ()):
        yield sub
        yield from _walk(sub)


def training_bn_layers(model: keras.Model) -> list:
    """The BatchNormalization layers that use batch statistics in a training step.

    In Keras 3 a non-trainable BN layer runs in inference mode even under training=True (its
    statistics are frozen), so only trainable ones drift and need re-estimating: none in the
    head stage, where the whole backbone is frozen.
    """
    seen, layers = set(), []
    for layer in _walk(model):
        if (isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
                and id(layer) not in seen):
            seen.add(id(layer))
            layers.append(layer)
    return layers


@contextlib.contextmanager
def _batch_statistics_mode(layers):
    """momentum 0 and synchronized moments on `layers`; the original values restored after."""
    saved = [(layer.momentum, layer.synchronized) for layer in layers]
    try:
        for layer in layers:
            layer.momentum, layer.synchronized = 0.0, True
        yield
    finally:
        for layer, (momentum, synchronized) in zip(layers, saved, strict=True):
            layer.momentum, layer.synchronized = momentum, synchronized


class Recalibrator:
    """Re-estimates the moving statistics of ``training_bn_layers(model)``.

    Build it after the model's trainable flags are set for the stage (the layer list is taken
    then). Call it with an iterator over a distributed dataset of (images, ...) batches; the
    iterator advances by ``num_batches``. The other weights are not changed.
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy | None = None):
        self.model = model
        self.strategy = strategy or tf.distribute.get_strategy()
        self.layers = training_bn_layers(model)
        self._step = None

    def _make_step(self):
        model, layers, strategy = self.model, self.layers, self.strategy

        def replica_step(batch):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(images, training=True)
            # Read after the update (automatic control dependencies order it): with momentum 0
            # these are this global batch's mean and variance.
            return [keras.ops.convert_to_tensor(v) for layer in layers
                    for v in (layer.moving_mean, layer.moving_variance)]

        @tf.function
        def step(iterator):
            per_replica = strategy.run(replica_step, args=(next(iterator),))
            # Synchronized moments make every replica's values equal: take the first local one.
            return [strategy.experimental_local_results(v)[0] for v in per_replica]

        return step

    def __call__(self, iterator, num_batches: int) -> int:
        """Averages over `num_batches` batches; returns the number of layers recalibrated."""
        if not self.layers or num_batches < 1:
            return 0
        sums = None
        with _batch_statistics_mode(self.layers):
            if self._step is None:
                self._step = self._make_step()  # traced on first call, inside the mode
            for _ in range(num_batches):
                values = [v.numpy().astype(np.float64) for v in self._step(iterator)]
                sums = values if sums is None else [s + v for s, v in zip(sums, values,
                                                                           strict=True)]
        with self.strategy.scope():
            for i, layer in enumerate(self.layers):
                layer.moving_mean.assign((sums[2 * i] / num_batches).astype(np.float32))
                layer.moving_variance.assign((sums[2 * i + 1] / num_batches).astype(np.float32))
        return len(self.layers)


def recalibrate(model: keras.Model, batches, num_batches: int,
                strategy: tf.distribute.Strategy | None = None) -> int:
    """One-off recalibration over the first `num_batches` of `batches` (a dataset or iterator).

    `batches` must be distributed by `strategy` when one is given. Returns the number of layers.
    """
    return Recalibrator(model, strategy)(iter(batches), num_batches)  # iter(iterator) is itself
