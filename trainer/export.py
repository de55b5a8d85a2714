"""SavedModel export: image bytes (or framed images) in, age out.

Signatures:
  serving_default(image_bytes: string [None]) -> {"age": float32 [None]}
  predict_images(images: float32 [None, None, None, 3], 0..255) -> same outputs
dex models add "age_distribution" float32 [None, max_age + 1].

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

from trainer import framing
from trainer.model import expected_age


class AgeModule(tf.Module):
    """The exported object: the Keras model plus the framing/clamp that surround it."""

    def __init__(self, model, image_size: int, head: str, max_age: int, resize: str = "crop",
                 margin: float = 0.0):
        super().__init__(name="face_age")
        framing.check(image_size, resize, margin)
        self.model = model
        self.head = head
        self._image_size = image_size
        self._resize = resize
        self._margin = float(margin)
        self._max_age = float(max_age)
        # Readable after tf.saved_model.load (predict.py and evaluate.py use them).
        self.image_size = tf.Variable(image_size, trainable=False, name="image_size")
        self.max_age = tf.Variable(max_age, trainable=False, name="max_age")
        self.resize = tf.Variable(resize, trainable=False, name="resize")
        self.margin = tf.Variable(self._margin, dtype=tf.float64, trainable=False, name="margin")

    def _outputs(self, images):
        probs = self.model(images, training=False)
        age = tf.clip_by_value(expected_age(probs, self.head), 0.0, self._max_age)
        out = {"age": age}
        if self.head == "dex":
            out["age_distribution"] = tf.cast(probs, tf.float32)
        return out

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        size = self._image_size
        images = tf.map_fn(
            lambda b: framing.decode_and_frame(b, size, self._resize, self._margin),
            image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return self._outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32,
                                                name="images")])
    def serve_images(self, images):
        # Already framed: margin 0, so only the resize to the input size (a no-op for records).
        return self._outputs(framing.frame(images, self._image_size, self._resize, 0.0))


def export_saved_model(model, path: str, image_size: int, head: str, max_age: int, *,
                       resize: str = "crop", margin: float = 0.0) -> str:
    """Writes the SavedModel (local or gs://) and returns its path.

    ``resize`` and ``margin`` must be the training records' (stats.json): serving_default
    frames raw photos with them.
    """
    if head not in ("regression", "dex"):
        raise ValueError(f"head must be regression or dex, got {head!r}")
    module = AgeModule(model, image_size, head, max_age, resize, margin)
    signatures = {"serving_default": module.serve_bytes.get_concrete_function(),
                  "predict_images": module.serve_images.get_concrete_function()}
    tf.saved_model.save(module, path, signatures=signatures)
    return path

