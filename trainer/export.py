"""SavedModel export: image bytes (or framed images) in, age out.

  serving_default(image_bytes: string [None]) -> {"age": float32 [None]}
  predict_images(images: float32 [None, None, None, 3], 0..255) -> same outputs
dex models add "age_distribution" [None, max_age + 1] and "age_std" [None] (per-face std, years).

``serving_default`` frames raw photos exactly as preprocessing did (trainer.framing) but ignores
EXIF, so clients orient files first (trainer.orientation). ``predict_images`` takes framed faces
and only resizes them. The framing settings (``image_size``, ``resize``, ``margin``) are stored
as variables in the SavedModel; ``framing.read_framing`` reads them back.
"""

from __future__ import annotations

import tensorflow as tf

from contract.framing import Framing
from trainer import framing as tf_framing
from trainer.model import age_std, expected_age


class AgeModule(tf.Module):
    """The exported object: the Keras model plus the framing/clamp that surround it."""

    def __init__(self, model, framing: Framing, head: str, max_age: int):
        super().__init__(name="face_age")
        self._hold(model)
        self.head = head
        self._framing = framing.served()
        self._max_age = float(max_age)
        # Readable after tf.saved_model.load (predict.py, evaluate.py, framing.read_framing).
        self.image_size = tf.Variable(self._framing.image_size, trainable=False,
                                      name="image_size")
        self.max_age = tf.Variable(max_age, trainable=False, name="max_age")
        self.resize = tf.Variable(self._framing.resize, trainable=False, name="resize")
        self.margin = tf.Variable(self._framing.margin, dtype=tf.float64, trainable=False,
                                  name="margin")
        self.max_pixels = tf.Variable(self._framing.max_pixels, dtype=tf.int64,
                                      trainable=False, name="max_pixels")
        self.max_aspect_ratio = tf.Variable(self._framing.max_aspect_ratio, dtype=tf.float64,
                                            trainable=False, name="max_aspect_ratio")

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _hold(self, model):
        # Not a tracked child: Keras 3 variables export as detached copies (see export()).
        self._model = model

    def _outputs(self, images):
        probs = self._model(images, training=False)
        # Clamped here and only here: in training a clamp would zero out-of-range gradients.
        age = tf.clip_by_value(expected_age(probs, self.head), 0.0, self._max_age)
        out = {"age": age}
        if self.head == "dex":
            out["age_distribution"] = tf.cast(probs, tf.float32)
            out["age_std"] = age_std(probs, self.head)
        return out

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        served = self._framing
        size = served.image_size

        def one(data):  # the header is checked before anything is decoded
            data = tf_framing.check_declared_size(data, served.max_pixels,
                                               served.max_aspect_ratio, gif=False)
            return tf_framing.decode_and_frame(data, served)

        # One photo at a time: memory is bounded by one maximal photo, not ten.
        images = tf.map_fn(one, image_bytes, parallel_iterations=1,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return self._outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32,
                                                name="images")])
    def serve_images(self, images):
        # The pixels are in memory already, but a strip's resize would still grow unbounded.
        shape = tf.shape(images, out_type=tf.int64)
        served = self._framing
        images = tf_framing.check_size(images, shape[2], shape[1], served.max_pixels,
                                    served.max_aspect_ratio, what="images")
        # Already framed: margin 0, so only the resize to the input size (a no-op for records).
        return self._outputs(tf_framing.frame(images, served.image_size, served.resize, 0.0))


def export_saved_model(model, path: str, framing: Framing, head: str, max_age: int, *,
                       photo_face: str = "none") -> str:
    """Writes the SavedModel (local or gs://) and returns its path.

    ``framing``: the training records' (Framing.from_stats) at the model's input size;
    serving_default frames raw photos with it, within ``Framing.served()``'s pixel limit.
    ``photo_face="detect"|"align"`` adds the whole-photo signature (trainer.photo_signature;
    needs the [faces] extra).
    """
    if head not in ("regression", "dex"):
        raise ValueError(f"head must be regression or dex, got {head!r}")
    module = AgeModule(model, framing, head, max_age)
    signatures = {"serving_default": module.serve_bytes.get_concrete_function(),
                  "predict_images": module.serve_images.get_concrete_function()}
    if photo_face != "none":
        from trainer import photo_signature

        module.photo = photo_signature.PhotoSignature(module._outputs, module._framing,
                                                      photo_face)
        signatures[photo_signature.NAME] = module.photo.predict_photo.get_concrete_function()
    # Track the tf.Variables the signatures read, as themselves. Tracking the Keras model
    # instead exports each keras.Variable as a new variable initialised from the captured one:
    # TF2's loader rebinds the captures, but TF1's session loader (TF Serving) restores only
    # the new ones and the signatures then read variables that were never restored.
    module.model_variables = captured_variables(signatures.values())
    tf.saved_model.save(module, path, signatures=signatures)
    return path


def captured_variables(functions) -> list:
    """The tf.Variables the traced functions read, each once, in first-read order."""
    seen, out = set(), []
    for function in functions:
        for variable in function.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out
