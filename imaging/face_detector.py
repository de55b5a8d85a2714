"""MTCNN face detection as one TensorFlow graph: photo (pixels or encoded bytes) -> boxes, five
landmarks, scores. Needs the ``[faces]`` extra; import it only where faces are detected.

The networks and weights are the ``mtcnn`` package's (MIT; weights shipped in its wheel); the
glue around them (pyramid, proposals, NMS, patch crops) is rewritten here in TF ops, so the whole
detector traces into a SavedModel signature and runs as one compiled function (the package's own
glue is numpy between Keras calls). The photo is first scaled so its long side is ``side`` and
padded to a ``side`` square: the image pyramid is then fixed, so the graph traces once. Faces
narrower than about ``min_face`` pixels of that scaled photo are not found.
"""

from __future__ import annotations

import tensorflow as tf

DETECT_SIDE = 640
MIN_FACE = 20
THRESHOLDS = (0.6, 0.7, 0.8)  # P-Net, R-Net, O-Net face probability (the package's defaults)
_SCALE_STEP = 0.709
_PNET_CELL, _PNET_STRIDE = 12, 2
_MAX_PROPOSALS = 2000


def pyramid(side: int, min_face: int) -> list[int]:
    """The P-Net input sizes: the padded square scaled so a min_face face is 12 px, then by
    0.709 per level while the level still holds one 12 px cell."""
    sizes, scale = [], _PNET_CELL / min_face
    while side * scale >= _PNET_CELL:
        sizes.append(int(side * scale))
        scale *= _SCALE_STEP
    return sizes


def _networks():
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet
    from mtcnn.utils.tensorflow import load_weights

    nets = []
    for cls, weights in ((PNet, "pnet.lz4"), (RNet, "rnet.lz4"), (ONet, "onet.lz4")):
        net = cls()
        net.build()
        net.set_weights(load_weights(weights))
        nets.append(net)
    return nets


def _square(boxes):
    """[N, 4] x1,y1,x2,y2 -> squares of the longer side with the same centres."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = tf.maximum(w, h)
    x1, y1 = boxes[:, 0] + (w - side) / 2, boxes[:, 1] + (h - side) / 2
    return tf.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _nms(boxes, scores, iou: float):
    """Greedy NMS by IoU -> indices, best first."""
    yx = tf.gather(boxes, [1, 0, 3, 2], axis=1)
    return tf.image.non_max_suppression(yx, scores, _MAX_PROPOSALS, iou_threshold=iou)


def _nms_min(boxes, scores, threshold: float):
    """The last MTCNN stage's suppression: drop a box when a better one covers more than
    ``threshold`` of the smaller of the two (a face box inside another face box goes)."""
    order = tf.argsort(scores, direction="DESCENDING")
    b = tf.gather(boxes, order)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = tf.maximum(0.0, tf.minimum(b[:, None, 2], b[None, :, 2])
                    - tf.maximum(b[:, None, 0], b[None, :, 0]))
    ih = tf.maximum(0.0, tf.minimum(b[:, None, 3], b[None, :, 3])
                    - tf.maximum(b[:, None, 1], b[None, :, 1]))
    overlap = iw * ih / tf.maximum(1e-6, tf.minimum(area[:, None], area[None, :]))
    n = tf.shape(b)[0]
    better = tf.linalg.band_part(tf.ones([n, n]), 0, -1) - tf.eye(n)  # row i better than col j
    beaten = tf.reduce_any((overlap > threshold) & (better > 0), axis=0)
    return tf.boolean_mask(order, tf.logical_not(beaten))


def run_nonempty(fn, batch):
    """``fn(batch)`` with a blank row appended to the batch and dropped from every output:
    oneDNN's convolution on AVX-512 CPUs returns its input unchanged for an empty batch, so a
    network must never see one (a photo where no face box survived a stage)."""
    blank = tf.zeros(tf.concat([[1], tf.shape(batch)[1:]], 0), batch.dtype)
    return tf.nest.map_structure(lambda out: out[:-1], fn(tf.concat([batch, blank], 0)))


def _on_patches(net, image, boxes, size: int, side: int):
    """``net`` on the photo's patches under ``boxes``, one output row per box."""
    return run_nonempty(net, _patches(image, boxes, size, side))


def _patches(image, boxes, size: int, side: int):
    yx = tf.gather(boxes, [1, 0, 3, 2], axis=1) / float(side)
    return tf.image.crop_and_resize(image, yx, tf.zeros(tf.shape(boxes)[:1], tf.int32),
                                    [size, size])


class Detector(tf.Module):
    """``detect_image(uint8 [H, W, 3])`` and ``detect_bytes(string)`` -> {"boxes": [N, 4]
    x1,y1,x2,y2, "landmarks": [N, 5, 2] x,y (imaging.faces.LANDMARKS order), "scores": [N]},
    in the photo's pixels, best first. Both are tf.functions, fit for a SavedModel."""

    def __init__(self, side: int = DETECT_SIDE, min_face: int = MIN_FACE,
                 thresholds: tuple[float, float, float] = THRESHOLDS):
        super().__init__(name="face_detector")
        if side < _PNET_CELL or min_face < _PNET_CELL:
            raise ValueError(f"side={side}, min_face={min_face}: both must be >= {_PNET_CELL}")
        self.side, self.min_face, self.thresholds = int(side), int(min_face), tuple(thresholds)
        self.pnet, self.rnet, self.onet = _networks()
        self._sizes = pyramid(self.side, self.min_face)
        self.detect_image = tf.function(
            self._detect, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
        self.detect_bytes = tf.function(
            lambda data: self._detect(tf.io.decode_image(data, 3, expand_animations=False)),
            input_signature=[tf.TensorSpec([], tf.string)])

    def _proposals(self, image):
        t1 = self.thresholds[0]
        all_boxes, all_scores = [], []
        for size in self._sizes:
            level = tf.image.resize(image, [size, size], method="area")
            reg, prob = self.pnet(level)
            scale = size / self.side
            where = tf.where(prob[0, :, :, 1] > t1)  # [K, 2] (row, col)
            score = tf.gather_nd(prob[0, :, :, 1], where)
            reg = tf.gather_nd(reg[0], where)
            yx = tf.cast(where, tf.float32) * _PNET_STRIDE
            cell = float(_PNET_CELL - 1)
            boxes = tf.stack([yx[:, 1] + 1 + reg[:, 0] * cell, yx[:, 0] + 1 + reg[:, 1] * cell,
                              yx[:, 1] + _PNET_CELL + reg[:, 2] * cell,
                              yx[:, 0] + _PNET_CELL + reg[:, 3] * cell], axis=1) / scale
            keep = _nms(boxes, score, 0.5)
            all_boxes.append(tf.gather(boxes, keep))
            all_scores.append(tf.gather(score, keep))
        boxes, scores = tf.concat(all_boxes, 0), tf.concat(all_scores, 0)
        keep = _nms(boxes, scores, 0.7)
        return _square(tf.gather(boxes, keep))

    def _refine(self, image, boxes):
        offsets, prob = _on_patches(self.rnet, image, boxes, 24, self.side)
        score = prob[:, -1]
        wh = tf.tile(boxes[:, 2:] - boxes[:, :2] + 1.0, [1, 2])
        keep = tf.where(score > self.thresholds[1])[:, 0]
        boxes, score = tf.gather(boxes + offsets * wh, keep), tf.gather(score, keep)
        keep = _nms(boxes, score, 0.7)
        return _square(tf.gather(boxes, keep))

    def _output(self, image, boxes):
        offsets, marks, prob = _on_patches(self.onet, image, boxes, 48, self.side)
        score = prob[:, -1]
        wh = boxes[:, 2:] - boxes[:, :2] + 1.0
        landmarks = tf.stack([wh[:, :1] * marks[:, :5] + boxes[:, :1] - 1.0,
                              wh[:, 1:] * marks[:, 5:] + boxes[:, 1:2] - 1.0], axis=2)
        boxes = boxes + offsets * tf.tile(wh, [1, 2])
        keep = tf.where(score > self.thresholds[2])[:, 0]
        boxes, score = tf.gather(boxes, keep), tf.gather(score, keep)
        landmarks = tf.gather(landmarks, keep)
        keep = _nms_min(boxes, score, 0.7)
        return tf.gather(boxes, keep), tf.gather(landmarks, keep), tf.gather(score, keep)

    def _detect(self, image):
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        ratio = self.side / tf.maximum(tf.reduce_max(shape), 1.0)
        new = tf.maximum(1, tf.cast(tf.round(shape * ratio), tf.int32))
        x = tf.image.resize(tf.cast(image, tf.float32)[None], new, method="bilinear",
                            antialias=True)
        x = (x - 127.5) / 128.0
        x = tf.pad(x, [[0, 0], [0, self.side - new[0]], [0, self.side - new[1]], [0, 0]])
        x = tf.ensure_shape(x, [1, self.side, self.side, 3])
        boxes = self._refine(x, self._proposals(x))
        boxes, landmarks, scores = self._output(x, boxes)
        return {"boxes": boxes / ratio, "landmarks": landmarks / ratio, "scores": scores}

