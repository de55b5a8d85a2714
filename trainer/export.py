"""SavedModel export: image bytes (or decoded images) in, age out.

Signatures:
  serving_default(image_bytes: string [None]) -> {"age": float32 [None]}
  predict_images(images: float32 [None, None, None, 3], 0..255) -> same outputs
dex models add "age_distribution" float32 [None, max_age + 1].

Both signatures centre-crop each image to a square and resize it to the model's input size (the
geometry preprocessing gives the training records), then call the Keras model, whose first layers
are the backbone's own preprocessing: serving and training share one code path. The prediction is
clamped to [0, max_age] here and only here (in training a clamp would zero the gradient of
out-of-range guesses).
"""

from __future__ import annotations

import tensorflow as tf

from trainer.model import expected_age


def center_crop_resize(images, image_size: int):
    """[H, W, 3] or [B, H, W, 3] (any dtype, 0..255) -> float32 square image(s) of image_size."""
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    height, width = shape[-3], shape[-2]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    cropped = images[..., top:top + side, left:left + side, :]
    resized = tf.image.resize(cropped, [image_size, image_size], method="bilinear",
                              antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)  # antialiasing may overshoot slightly


def decode(image_bytes, image_size: int):
    """Encoded JPEG/PNG/BMP/GIF bytes (scalar) -> float32 [image_size, image_size, 3]."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return center_crop_resize(image, image_size)


class AgeModule(tf.Module):
    """The exported object: the Keras model plus the resize/clamp that surround it."""

    def __init__(self, model, image_size: int, head: str, max_age: int):
        super().__init__(name="face_age")
        self.model = model
        self.head = head
        self._image_size = image_size
        self._max_age = float(max_age)
        # Readable after tf.saved_model.load (predict.py uses them).
        self.image_size = tf.Variable(image_size, trainable=False, name="image_size")
        self.max_age = tf.Variable(max_age, trainable=False, name="max_age")

    def _outputs(self, images):
        probs = self.model(images, training=False)
        age = tf.clip_by_value(expected_age(probs, self.head), 0.0, self._max_age)
        out = {"age": age}
        if self.head == "dex":
            out["age_distribution"] = tf.cast(probs, tf.float32)
        return out

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        images = tf.map_fn(lambda b: decode(b, self._image_size), image_bytes,
                           fn_output_signature=tf.TensorSpec(
                               [self._image_size, self._image_size, 3], tf.float32))
        return self._outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32,
                                                name="images")])
    def serve_images(self, images):
        return self._outputs(center_crop_resize(images, self._image_size))


def export_saved_model(model, path: str, image_size: int, head: str, max_age: int) -> str:
    """Writes the SavedModel (local or gs://) and returns its path."""
    if head not in ("regression", "dex"):
        raise ValueError(f"head must be regression or dex, got {head!r}")
    module = AgeModule(model, image_size, head, max_age)
    signatures = {"serving_default": module.serve_bytes.get_concrete_function(),
                  "predict_images": module.serve_images.get_concrete_function()}
    tf.saved_model.save(module, path, signatures=signatures)
    return path
