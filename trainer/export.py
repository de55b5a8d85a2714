"""SavedModel export: image bytes (or framed images) in, age out.

Signatures:
  serving_default(image_bytes: string [None]) -> {"age": float32 [None]}
  predict_images(images: float32 [None, None, None, 3], 0..255) -> same outputs
dex models add "age_distribution" float32 [None, max_age + 1] and "age_std" float32 [None],
the standard deviation of that distribution in years (the per-face uncertainty; regression
models have no distribution and so no "age_std").

``serving_default`` takes raw photos and frames each one exactly as preprocessing framed the
training records (trainer.framing: the same decode, ``margin`` trim, ``resize`` crop or pad and
bicubic resize to the model's input size). It does not read EXIF (TensorFlow's decoders ignore
it, while preprocessing turned every photo upright), so a sideways-stored phone photo would be
framed sideways: the project's clients (trainer.predict, ``deploy.serve predict``) orient such
files first (trainer.orientation) and other callers should too. ``predict_images`` takes faces
that are framed already, such as the decoded records trainer.evaluate feeds or what
trainer.predict prepares: it only brings them to the input size with the same resize mode, and
does not trim the margin a second time. Both then call the Keras model, whose first layers are
the backbone's own preprocessing: serving and training share one code path. The prediction is
clamped to [0, max_age] here and only here (in training a clamp would zero the gradient of
out-of-range guesses).

The framing settings are stored in the SavedModel next to the image size
(``image_size``, ``resize``, ``margin`` variables; ``framing.read_framing`` reads them back).
"""

from __future__ import annotations

import tensorflow as tf

from contract import limits
from contract.stats import Stats
from trainer import framing
from trainer.model import age_std, expected_age


def serving_limits(stats: Stats | None = None) -> tuple[int, float]:
    """(max_pixels, max_aspect_ratio) for serving: the training data's (stats.json), with
    contract.limits' defaults, and never more pixels than SERVING_MAX_PIXELS."""
    if stats is None:
        return limits.SERVING_MAX_PIXELS, limits.MAX_ASPECT_RATIO
    return min(stats.max_pixels, limits.SERVING_MAX_PIXELS), stats.max_aspect_ratio


class AgeModule(tf.Module):
    """The exported object: the Keras model plus the framing/clamp that surround it."""

    def __init__(self, model, image_size: int, head: str, max_age: int, resize: str = "crop",
                 margin: float = 0.0, max_pixels: int = limits.SERVING_MAX_PIXELS,
                 max_aspect_ratio: float = limits.MAX_ASPECT_RATIO):
        super().__init__(name="face_age")
        framing.check(image_size, resize, margin)
        if int(max_pixels) < 1 or not float(max_aspect_ratio) >= 1.0:
            raise ValueError(f"max_pixels={max_pixels}, max_aspect_ratio={max_aspect_ratio}: "
                             "expected max_pixels >= 1 and max_aspect_ratio >= 1")
        self._hold(model)
        self.head = head
        self._image_size = image_size
        self._resize = resize
        self._margin = float(margin)
        self._max_age = float(max_age)
        self._limits = (int(max_pixels), float(max_aspect_ratio))
        # Readable after tf.saved_model.load (predict.py, evaluate.py, framing.read_framing).
        self.image_size = tf.Variable(image_size, trainable=False, name="image_size")
        self.max_age = tf.Variable(max_age, trainable=False, name="max_age")
        self.resize = tf.Variable(resize, trainable=False, name="resize")
        self.margin = tf.Variable(self._margin, dtype=tf.float64, trainable=False, name="margin")
        self.max_pixels = tf.Variable(int(max_pixels), dtype=tf.int64, trainable=False,
                                      name="max_pixels")
        self.max_aspect_ratio = tf.Variable(float(max_aspect_ratio), dtype=tf.float64,
                                            trainable=False, name="max_aspect_ratio")

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _hold(self, model):
        # Not a tracked child: Keras 3 variables export as detached copies (see export()).
        self._model = model

    def _outputs(self, images):
        probs = self._model(images, training=False)
        age = tf.clip_by_value(expected_age(probs, self.head), 0.0, self._max_age)
        out = {"age": age}
        if self.head == "dex":
            out["age_distribution"] = tf.cast(probs, tf.float32)
            out["age_std"] = age_std(probs, self.head)
        return out

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        size = self._image_size

        def one(data):  # the header is checked before anything is decoded
            data = framing.check_declared_size(data, *self._limits, gif=False)
            return framing.decode_and_frame(data, size, self._resize, self._margin)

        # One photo at a time: memory is bounded by one maximal photo, not ten.
        images = tf.map_fn(one, image_bytes, parallel_iterations=1,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return self._outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32,
                                                name="images")])
    def serve_images(self, images):
        # The pixels are in memory already, but a strip's resize would still grow unbounded.
        shape = tf.shape(images, out_type=tf.int64)
        images = framing.check_size(images, shape[2], shape[1], *self._limits, what="images")
        # Already framed: margin 0, so only the resize to the input size (a no-op for records).
        return self._outputs(framing.frame(images, self._image_size, self._resize, 0.0))


def export_saved_model(model, path: str, image_size: int, head: str, max_age: int, *,
                       resize: str = "crop", margin: float = 0.0,
                       size_limits: tuple[int, float] | None = None) -> str:
    """Writes the SavedModel (local or gs://) and returns its path.

    ``resize`` and ``margin`` must be the training records' (stats.json): serving_default
    frames raw photos with them. ``size_limits`` = (max_pixels, max_aspect_ratio), default
    ``serving_limits()``.
    """
    if head not in ("regression", "dex"):
        raise ValueError(f"head must be regression or dex, got {head!r}")
    module = AgeModule(model, image_size, head, max_age, resize, margin,
                       *(size_limits or serving_limits()))
    signatures = {"serving_default": module.serve_bytes.get_concrete_function(),
                  "predict_images": module.serve_images.get_concrete_function()}
    # Track the tf.Variables the signatures read, as themselves. Tracking the Keras model
    # instead exports each keras.Variable as a new variable initialised from the captured one:
    # TF2's loader rebinds the captures, but TF1's session loader (TF Serving) restores only
    # the new ones and the signatures then read variables that were never restored.
    module.model_variables = _captured_variables(signatures.values())
    tf.saved_model.save(module, path, signatures=signatures)
    return path


def _captured_variables(functions) -> list:
    seen, out = set(), []
    for function in functions:
        for variable in function.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out
