"""Honest in-run baselines for the quality benchmark: measured on the same split, never quoted.

- ``median``: predict the training split's median age for every face (the floor any model must
  clear; its MAE is the mean absolute deviation around the median).
- ``ridge``: ridge regression on small grey thumbnails (32x32 by default), the penalty picked on
  the validation split. It shows how much of the signal plain pixel intensities carry.
Both read the records through ``trainer.data.build_dataset``, i.e. the same decoded images the
model sees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from trainer import data


def thumbnails(data_dir: str, split: str, *, image_size: int, thumb: int = 32,
               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Grey [N, thumb*thumb] features in 0..1, true ages [N] and record ids of one split."""
    ds = data.build_dataset(data_dir, split, batch_size=batch_size, image_size=image_size,
                            training=False, with_metadata=True)
    feats, ages, ids = [], [], []
    for images, age, meta in ds:
        small = tf.image.resize(tf.image.rgb_to_grayscale(images), [thumb, thumb],
                                antialias=True)
        feats.append(small.numpy().reshape(len(small), -1) / 255.0)
        ages.append(age.numpy())
        ids += [i.decode() for i in meta["id"].numpy()]
    return np.concatenate(feats).astype(np.float64), np.concatenate(ages).astype(np.float64), ids


def fit_ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float, tuple]:
    """Closed-form ridge on standardised features; returns (weights, intercept, scaler)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8
    z = (x - mean) / std
    gram = z.T @ z + penalty * np.eye(z.shape[1])
    w = np.linalg.solve(gram, z.T @ (y - y.mean()))
    return w, float(y.mean()), (mean, std)


def predict_ridge(model, x: np.ndarray) -> np.ndarray:
    w, intercept, (mean, std) = model
    return ((x - mean) / std) @ w + intercept


def ridge_baseline(train, validation, penalties=(1.0, 10.0, 100.0, 1e3, 1e4, 1e5)):
    """Fits on train, picks the penalty with the lowest validation MAE; returns (model, log)."""
    (xt, yt), (xv, yv) = train, validation
    log = {}
    best = None
    for penalty in penalties:
        model = fit_ridge(xt, yt, penalty)
        mae = float(np.mean(np.abs(predict_ridge(model, xv) - yv)))
        log[penalty] = mae
        if best is None or mae < best[0]:
            best = (mae, penalty, model)
    return best[2], {"penalty": best[1], "validation_mae_by_penalty": log}


def predictions_frame(ids, true, pred) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "true_age": true, "predicted_age": pred})
