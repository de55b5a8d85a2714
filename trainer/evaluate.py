"""Evaluates an exported model on one split and writes predictions, metrics and a report.

    python -m trainer.evaluate --model=MODEL_DIR --data_dir=DATA_DIR --split=test \\
        --output_dir=OUT [--tta_flip] [--batch_size=64]

``--model`` is a trainer MODEL_DIR (its ``saved_model/`` is evaluated, and its history.csv gives
the learning curves), a SavedModel directory itself, or a ``.tflite`` from trainer.export_lite
(run through the TFLite interpreter, trainer.lite). The SavedModel is used through its
``predict_images`` signature, i.e. exactly what is served, so the report measures the deployed
artefact and not a Keras object that could differ from it. Outputs in OUT (local or gs://):
predictions.csv, metrics.json, report.html, report.md and plots/*.png.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from contract import files, schema
from contract import stats as stats_file
from contract.framing import Framing
from trainer import (
    data,
    lite,
    metrics,
    plots,
    report,
    shards,
    spreadsheet,
    uncertainty,
)
from trainer.predict import ModelLocation, load_predict_fn, locate_model, predict_batch

PREDICTIONS_CSV = "predictions.csv"
METRICS_JSON = "metrics.json"


def _text(values) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


class _WorstKeeper:
    """The n largest absolute errors seen so far, with their images (for the gallery)."""

    def __init__(self, n: int):
        self.n, self.errors, self.images, self.rows = n, np.zeros(0), [], []

    def add(self, errors: np.ndarray, images: np.ndarray, first_row: int) -> None:
        if self.n <= 0:
            return
        # Only this batch's candidates that can still enter the top n are copied out.
        top = np.argsort(-errors)[: self.n]
        errs = np.concatenate([self.errors, errors[top]])
        imgs = self.images + [np.clip(images[i], 0, 255).astype(np.uint8) for i in top]
        rows = self.rows + [first_row + int(i) for i in top]
        keep = np.argsort(-errs, kind="stable")[: self.n]
        self.errors = errs[keep]
        self.images = [imgs[i] for i in keep]
        self.rows = [rows[i] for i in keep]


def predict_split(predict_fn, data_dir: str, split: str, *, batch_size: int, image_size: int,
                  extra_columns=(), tta_flip: bool = False, worst: int = 12
                  ) -> tuple[pd.DataFrame, list[np.ndarray], list[int]]:
    """Runs the model over a split: predictions frame, worst images and their row numbers.

    With tta_flip the prediction is the mean of the image's and its mirror's (predict_batch).
    """
    ds = data.build_dataset(data_dir, split, batch_size=batch_size, image_size=image_size,
                            training=False, extra_columns=tuple(extra_columns),
                            with_metadata=True)
    columns = {k: [] for k in ("id", "file", "true_age", "predicted_age", "blur", "brightness",
                               *extra_columns)}
    keeper = _WorstKeeper(worst)
    for images, ages, meta in _checked(ds):
        out = predict_batch(predict_fn, images, tta_flip)
        pred = out["age"]
        if uncertainty.STD in out:  # dex models: the std of each face's age distribution
            columns.setdefault(uncertainty.STD, []).extend(out[uncertainty.STD].tolist())
        true = ages.numpy().astype(np.float64)
        keeper.add(np.abs(pred - true), images.numpy(), len(columns["id"]))
        columns["id"] += _text(meta["id"].numpy())
        columns["file"] += _text(meta["filename"].numpy())
        columns["true_age"] += true.tolist()
        columns["predicted_age"] += pred.astype(np.float64).tolist()
        columns["blur"] += meta["blur"].numpy().astype(np.float64).tolist()
        columns["brightness"] += meta["brightness"].numpy().astype(np.float64).tolist()
        for name in extra_columns:
            columns[name] += _text(meta[name].numpy())
        if data.FACE_SCORE_KEY in meta:  # records cut from photos by preprocessing --face
            columns.setdefault(data.FACE_SCORE_KEY, []).extend(
                meta[data.FACE_SCORE_KEY].numpy().astype(np.float64).tolist())
    frame = pd.DataFrame(columns)
    if frame.empty:
        raise ValueError(f"split {split!r} of {data_dir!r} holds no records to evaluate")
    return frame, keeper.images, keeper.rows


def _checked(ds):
    """Iterates `ds`, turning a damaged shard or record found inside tf.data into ShardError's
    one line (the file and what is wrong) instead of TF's op trace."""
    iterator = iter(ds)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            message = shards.clean_error(e)
            if message is None:
                raise
            raise shards.ShardError(message) from None


def read_history(model_dir: str | None) -> pd.DataFrame | None:
    path = f"{model_dir}/history.csv" if model_dir else None
    if not path or not files.exists(path):
        return None
    return pd.read_csv(io.StringIO(files.read_text(path)))


def evaluate(model: str, data_dir: str, split: str, output_dir: str, *, batch_size: int = 64,
             tta_flip: bool = False, image_size: int = 0, worst: int = 12,
             blur_quantiles: int = 4) -> dict:
    """The whole evaluation; returns what it writes to OUT/metrics.json."""
    if batch_size < 1:
        raise ValueError(f"--batch_size={batch_size}: must be a positive integer")
    if split not in schema.SPLITS:
        raise ValueError(f"--split={split!r}: must be one of {', '.join(schema.SPLITS)}")
    location = ModelLocation(model, None) if lite.is_lite(model) else locate_model(model)
    stats = stats_file.read(data_dir)
    config = (files.read_json(f"{location.model_dir}/config.json", None) if location.model_dir
              else lite.read_info(model) if lite.is_lite(model) else None)
    # The size the model was trained at wins over the size the records were written at.
    image_size = image_size or int((config or {}).get("image_size") or 0) or stats.image_size
    if image_size < 1:
        raise ValueError(f"no image size: pass --image_size (stats.json in {data_dir!r} and the "
                         f"model's config.json do not give one)")
    extra_columns = list(stats.extra_columns)
    # Bad values fail before predicting.
    data_framing = Framing.from_stats(stats, image_size=image_size,
                                      source=f"stats.json in {data_dir!r}")

    started = time.time()
    predict_fn = (lite.load_predict_fn(model) if lite.is_lite(model)
                  else load_predict_fn(location.saved_model))
    frame, worst_images, worst_rows = predict_split(
        predict_fn, data_dir, split, batch_size=batch_size, image_size=image_size,
        extra_columns=extra_columns, tta_flip=tta_flip, worst=worst)
    seconds = time.time() - started
    listed = stats.split(split).count if stats.split(split) else None
    if listed is not None and len(frame) != listed:  # the files' own counts were unknown
        raise shards.ShardError(
            f"{shards.DAMAGED}: the {split!r} shards in {data_dir!r} hold {len(frame)} records "
            f"where {schema.STATS_FILE} lists {listed}: a shard is truncated or replaced")
    # Records are fed as they are, so a model serving another framing than the records' cannot
    # show it in the numbers: say so in the report instead.
    served = predict_fn.framing

    evaluation = metrics.evaluation_metrics(frame, extra_columns, blur_quantiles)
    info = {"model": location.saved_model, "data_dir": data_dir, "split": split,
            "tta_flip": tta_flip, "image_size": image_size, "resize": served.resize,
            "margin": served.margin,
            "examples": len(frame), "seconds": round(seconds, 1)}
    if not served.same_geometry(data_framing):
        info["framing_mismatch"] = (
            f"the model frames served photos with resize={served.resize}, "
            f"margin={served.margin:g}; these records were framed with "
            f"resize={data_framing.resize}, margin={data_framing.margin:g}: "
            "these metrics do not describe the served model")
        logging.warning("%s", info["framing_mismatch"])
    extra_pngs, extra_sections = _uncertainty(frame, evaluation)
    result = {**info, **evaluation}

    base = output_dir.rstrip("/")
    buf = io.StringIO()
    # File names and labels are the user's text: no cell may run as a spreadsheet formula.
    spreadsheet.safe_frame(frame).to_csv(buf, index=False, float_format="%.4f")
    files.write_bytes(f"{base}/{PREDICTIONS_CSV}", buf.getvalue().encode("utf-8"))
    files.write_bytes(f"{base}/{METRICS_JSON}",
                      json.dumps(result, indent=2, allow_nan=False).encode("utf-8"))
    gallery = (worst_images, frame.iloc[worst_rows].reset_index(drop=True))
    pngs = report.build_plots(frame, evaluation, stats=stats,
                              history=read_history(location.model_dir), gallery=gallery)
    report.write_report(base, title=f"Age estimation: {split} split", info=info,
                        sections=report.evaluation_sections(evaluation, list(pngs))
                        + report.face_sections(stats, evaluation) + extra_sections,
                        pngs={**pngs, **extra_pngs})
    return result


def _uncertainty(frame: pd.DataFrame, evaluation: dict) -> tuple[dict, list]:
    """For dex models: evaluation["uncertainty"] (risk-coverage, calibration), its plot and
    report section; nothing for models without a per-face std."""
    if uncertainty.STD not in frame.columns:
        return {}, []
    evaluation["uncertainty"] = uncertainty.uncertainty_metrics(frame)
    curve = uncertainty.mae_by_confidence(frame["true_age"], frame["predicted_age"],
                                          frame[uncertainty.STD])
    png = plots.risk_coverage(curve, pd.DataFrame(evaluation["uncertainty"]["risk_coverage"]))
    return ({uncertainty.PLOT: png},
            [uncertainty.section(evaluation["uncertainty"], have_plot=True)])


def main(argv):
    del argv
    from absl import flags, logging

    f = flags.FLAGS
    try:
        result = evaluate(f.model, f.data_dir, f.split, f.output_dir, batch_size=f.batch_size,
                          tta_flip=f.tta_flip, image_size=f.image_size, worst=f.worst,
                          blur_quantiles=f.blur_quantiles)
    except (shards.ShardError, FileNotFoundError) as e:  # bad input: its one line, no trace
        print(f"trainer.evaluate: {e}", file=sys.stderr)
        return 1
    o = result["overall"]
    logging.info("%s split, %d faces: MAE %.3f, RMSE %.3f, CS@5 %.3f, bias %+.3f -> %s",
                 f.split, o["count"], o["mae"], o["rmse"], o["cs@5"], o["bias"], f.output_dir)
    print(json.dumps({"split": f.split, **o}))


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model", None, "Trainer MODEL_DIR, SavedModel directory or .tflite.")
    flags.DEFINE_string("data_dir", None, "Output directory of preprocessing.run.")
    flags.DEFINE_enum("split", "test", list(schema.SPLITS), "Split to evaluate.")
    flags.DEFINE_string("output_dir", None, "Where predictions, metrics and report go.")
    flags.DEFINE_integer("batch_size", 64, "Images per prediction call.")
    flags.DEFINE_bool("tta_flip", False, "Average predictions over the image and its mirror.")
    flags.DEFINE_integer("image_size", 0, "Input side; 0 = model config.json, else stats.json.")
    flags.DEFINE_integer("worst", 12, "Faces in the worst-predictions gallery (0: none).")
    flags.DEFINE_integer("blur_quantiles", 4, "Blur-score quantile bins in the report.")
    flags.mark_flags_as_required(["model", "data_dir", "output_dir"])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
