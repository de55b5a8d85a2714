"""The whole-photo signature: photo bytes in, every face's box, landmarks, score and age out,
detected, cropped and framed inside the graph (so TF Serving and Vertex can serve it).

    predict_photo(image_bytes: string [B]) -> boxes float32 [B, K, 4] (x0, y0, x1, y1),
        landmarks [B, K, 5, 2], scores [B, K], ages [B, K], num_faces int32 [B]

K = ``max_faces``; faces come largest first, rows past ``num_faces`` are zeros. Photos pass
serving_default's header check, then the MTCNN graph; faces are cut as trainer.photos cuts them
(``detect`` or ``align``) and framed like any served photo. EXIF orientation is ignored.
"""

from __future__ import annotations

import tensorflow as tf

from contract.framing import Framing
from imaging import face_detector, faces
from trainer import framing
from trainer.photos import ALIGNED_SIDE

NAME = "predict_photo"
FACE_MODES = ("detect", "align")
MAX_FACES = 8
OUTPUTS = ("boxes", "landmarks", "scores", "ages", "num_faces")


def check_face(face: str) -> str:
    if face not in FACE_MODES:
        raise ValueError(f"photo signature face={face!r}: must be one of {', '.join(FACE_MODES)}")
    return face


def detect_crop(image, box):
    """uint8 [H, W, 3] -> float32 crop of ``box`` rounded outwards, zeros past the edge: the
    pixels trainer.photos.face_crops cuts with PIL (sampled at whole pixels, so exact)."""
    x0, y0 = tf.floor(box[0]), tf.floor(box[1])
    x1, y1 = tf.maximum(tf.math.ceil(box[2]), x0 + 1), tf.maximum(tf.math.ceil(box[3]), y0 + 1)
    size = tf.cast(tf.stack([y1 - y0, x1 - x0]), tf.int32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.maximum(shape - 1.0, 1.0)
    # Corner pixel centres, normalised as crop_and_resize wants; a 1-pixel side samples y0.
    yx = tf.stack([y0 / scale[0], x0 / scale[1], (y1 - 1) / scale[0], (x1 - 1) / scale[1]])
    return tf.image.crop_and_resize(tf.cast(image, tf.float32)[None], yx[None], [0], size,
                                    extrapolation_value=0.0)[0]


def alignment_transform(landmarks, size: int):
    """[5, 2] landmarks -> 6 numbers (a, b, c, d, e, f) mapping pixel (x, y) of the ``size``
    square aligned crop back to the photo's (a x + b y + c, d x + e y + f), pixel centres at
    whole numbers (imaging.faces.alignment_matrix inverted, eye_mouth measure)."""
    left, right = landmarks[0], landmarks[1]
    eyes, mouth = (left + right) / 2, (landmarks[3] + landmarks[4]) / 2
    delta = right - left
    angle = tf.atan2(delta[1], delta[0])
    scale = faces.EYE_TO_MOUTH * size / tf.maximum(1e-6, tf.norm(mouth - eyes))
    c, s = tf.cos(-angle) * scale, tf.sin(-angle) * scale
    # forward: out = R (p - eyes) + target with R = [[c, -s], [s, c]]; inverse: p = R^-1 (...)
    det = c * c + s * s
    inv = tf.reshape(tf.stack([c, s, -s, c]) / det, [2, 2])
    target = tf.constant([size / 2, faces.EYE_LINE_Y * size], tf.float32)
    # PIL's continuous coordinates put pixel i's centre at i + 0.5: p = inv (o + 0.5 - target)
    # + eyes, and p - 0.5 in whole-number centres.
    offset = eyes - 0.5 + tf.linalg.matvec(inv, 0.5 - target)
    return tf.stack([inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1]])


def _cubic_weights(d):
    """The weights of the neighbours at -1, 0, 1, 2 of PIL's transform bicubic (a = -1)."""
    d2, d3 = d * d, d * d * d
    return tf.stack([-d + 2 * d2 - d3, 1 - 2 * d2 + d3, d + d2 - d3, d3 - d2], axis=-1)


def align_crop(image, landmarks, size: int = ALIGNED_SIDE):
    """uint8 [H, W, 3] -> float32 [size, size, 3] aligned crop: PIL's affine BICUBIC transform
    as imaging.faces.align runs it (4x4 neighbours clamped at the edge, black where the pixel's
    centre falls outside the photo, truncated to 8 bits), so the pixels are the client's."""
    t = alignment_transform(landmarks, size)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    out = tf.range(size, dtype=tf.float32)
    x = t[0] * out[None, :] + t[1] * out[:, None] + t[2]  # [size, size], whole-number centres
    y = t[3] * out[None, :] + t[4] * out[:, None] + t[5]
    inside = ((x >= -0.5) & (x < tf.cast(w, tf.float32) - 0.5)
              & (y >= -0.5) & (y < tf.cast(h, tf.float32) - 0.5))
    x0, y0 = tf.floor(x), tf.floor(y)
    steps = tf.range(-1, 3)
    xs = tf.clip_by_value(tf.cast(x0, tf.int32)[..., None] + steps, 0, w - 1)  # [S, S, 4]
    ys = tf.clip_by_value(tf.cast(y0, tf.int32)[..., None] + steps, 0, h - 1)
    # Only the 16 neighbours of each output pixel become float, never the whole photo.
    near = tf.cast(tf.gather(tf.reshape(image, [-1, 3]), ys[..., :, None] * w + xs[..., None, :]),
                   tf.float32)  # [S, S, 4 rows, 4 columns, 3]
    rows = tf.reduce_sum(near * _cubic_weights(x - x0)[:, :, None, :, None], axis=3)
    value = tf.reduce_sum(rows * _cubic_weights(y - y0)[..., None], axis=2)
    value = tf.where(inside[..., None], value, 0.0)
    return tf.clip_by_value(tf.floor(value), 0.0, 255.0)


def face_crop(image, box, landmarks, face: str, image_size: int, resize: str, margin: float):
    """One face of a uint8 [H, W, 3] photo -> float32 [image_size, image_size, 3]: cut out as
    ``face`` says, then framed like any served photo (the model's resize and margin)."""
    crop = align_crop(image, landmarks) if face == "align" else detect_crop(image, box)
    return framing.frame(crop, image_size, resize, margin)


class PhotoSignature(tf.Module):
    """``predict_photo`` around a model: ``outputs_fn(framed float32 [N, S, S, 3]) -> {"age"}``
    for images framed at ``image_size`` (trainer.export's AgeModule, or a loaded SavedModel's
    predict_images: ``from_saved_model``)."""

    def __init__(self, outputs_fn, served: Framing, face: str = "align",
                 max_faces: int = MAX_FACES, detector=None):
        super().__init__(name="photo_signature")
        if int(max_faces) < 1:
            raise ValueError(f"max_faces={max_faces}: must be >= 1")
        self._face, self._max_faces = check_face(face), int(max_faces)
        self._framing = served  # framing and size limits, as serving_default's
        self._hold(outputs_fn, detector or faces.detector())
        # Readable after loading: which crop the signature cuts, and how many faces it returns.
        self.face = tf.Variable(face, trainable=False, name="face")
        self.max_faces = tf.Variable(self._max_faces, trainable=False, name="max_faces")
        self.predict_photo = tf.function(
            self._predict, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _hold(self, outputs_fn, detector):
        # Not tracked: the detector's Keras 3 variables would export as detached copies; the
        # exporter tracks the tf.Variables the signature captures instead (trainer.export).
        self._outputs_fn, self._detector = outputs_fn, detector

    def _crop(self, image, box, landmarks):
        f = self._framing
        return face_crop(image, box, landmarks, self._face, f.image_size, f.resize, f.margin)

    def _one(self, data):
        k, size = self._max_faces, self._framing.image_size
        data = framing.check_declared_size(data, self._framing.max_pixels,
                                           self._framing.max_aspect_ratio, gif=False)
        image = framing.decode(data, size, full_size=True)
        found = self._detector._detect(image)
        boxes = found["boxes"]
        area = (tf.maximum(0.0, boxes[:, 2] - boxes[:, 0])
                * tf.maximum(0.0, boxes[:, 3] - boxes[:, 1]))
        order = tf.argsort(area, direction="DESCENDING", stable=True)[:k]  # largest first
        boxes, marks = tf.gather(boxes, order), tf.gather(found["landmarks"], order)
        scores = tf.gather(found["scores"], order)
        n = tf.shape(order)[0]
        crops = tf.map_fn(lambda i: self._crop(image, boxes[i], marks[i]), tf.range(n),
                          fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        pad = k - n
        return (tf.pad(boxes, [[0, pad], [0, 0]]), tf.pad(marks, [[0, pad], [0, 0], [0, 0]]),
                tf.pad(scores, [[0, pad]]), tf.pad(crops, [[0, pad], [0, 0], [0, 0], [0, 0]]), n)

    def _predict(self, image_bytes):
        k, size = self._max_faces, self._framing.image_size
        spec = tf.TensorSpec
        # One photo at a time, as serving_default: memory holds one decoded photo.
        boxes, marks, scores, crops, counts = tf.map_fn(
            self._one, image_bytes, parallel_iterations=1, fn_output_signature=(
                spec([k, 4], tf.float32), spec([k, 5, 2], tf.float32), spec([k], tf.float32),
                spec([k, size, size, 3], tf.float32), spec([], tf.int32)))
        valid = tf.range(k)[None, :] < counts[:, None]
        where = tf.where(valid)
        # Only the faces found go through the model, all photos' faces in one batch.
        found = face_detector.run_nonempty(self._outputs_fn, tf.gather_nd(crops, where))
        ages = tf.reshape(found["age"], [-1])
        ages = tf.scatter_nd(where, tf.cast(ages, tf.float32), tf.shape(valid, tf.int64))
        return {"boxes": boxes, "landmarks": marks, "scores": scores, "ages": ages,
                "num_faces": counts}


def from_saved_model(loaded, face: str = "align", max_faces: int = MAX_FACES,
                     detector=None) -> PhotoSignature:
    """The photo signature around a loaded trainer.export SavedModel's predict_images (for
    models exported without it; eager use, e.g. bench.photo_accuracy)."""
    predict_images = loaded.signatures["predict_images"]
    return PhotoSignature(lambda images: predict_images(images=images),
                          framing.read_framing(loaded), face, max_faces, detector)

