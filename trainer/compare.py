"""Puts several training runs side by side: one table, learning curves and per-band errors.

    python -m trainer.compare RUN_DIR [RUN_DIR ...] --output_dir=OUT [--split=test]

Each RUN_DIR is a trainer MODEL_DIR: config.json (the resolved config), history.csv (one row per
epoch) and metrics.json (the trainer's final validation numbers), plus any number of evaluation
outputs of ``trainer.evaluate`` in sub-directories (found by their metrics.json + predictions.csv;
the study script writes RUN_DIR/eval_test). The table shows only the config fields that differ
between the runs, so each row says what the comparison varied. Writes OUT/compare.csv,
OUT/compare.md and OUT/compare.html (PNGs embedded) and OUT/plots/.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import pandas as pd
import tensorflow as tf

from contract import files
from trainer import metrics, plots, report, spreadsheet

# Paths and bookkeeping that differ between any two runs without changing what was trained.
_IGNORED_CONFIG = {"data_dir", "model_dir", "checkpoint_dir", "tensorboard_dir", "verbose",
                   "export", "tpu"}
# Shown when there is only one run (nothing differs) so the table still says what was trained.
_KEY_CONFIG = ("backbone", "weights", "head", "sample_weighting", "augment", "epochs",
               "freeze_epochs", "image_size")


@dataclass
class Run:
    name: str
    path: str
    config: dict = field(default_factory=dict)
    history: pd.DataFrame | None = None
    trainer_metrics: dict = field(default_factory=dict)
    evaluations: dict = field(default_factory=dict)  # split -> evaluate's metrics.json


def load_run(path: str) -> Run:
    """Reads what a run dir holds; a clear error when it holds none of the expected files."""
    path = path.rstrip("/")
    if not tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"run dir {path!r} does not exist")
    run = Run(name=path.rsplit("/", 1)[-1], path=path)
    run.config = files.read_json(f"{path}/config.json", None) or {}
    run.trainer_metrics = files.read_json(f"{path}/metrics.json", None) or {}
    if tf.io.gfile.exists(f"{path}/history.csv"):
        with tf.io.gfile.GFile(f"{path}/history.csv") as f:
            run.history = pd.read_csv(f)
    for sub in sorted(tf.io.gfile.listdir(path)):
        sub = f"{path}/{sub.rstrip('/')}"
        if tf.io.gfile.exists(f"{sub}/predictions.csv"):
            evaluation = files.read_json(f"{sub}/metrics.json", None)
            if evaluation and "overall" in evaluation:
                run.evaluations.setdefault(evaluation.get("split", sub), evaluation)
    if not (run.config or run.history is not None or run.trainer_metrics or run.evaluations):
        raise FileNotFoundError(
            f"run dir {path!r} holds no config.json, history.csv, metrics.json or evaluation "
            f"output: is it a trainer --model_dir?")
    return run


def differing_config(runs: list[Run]) -> list[str]:
    """Config fields whose values are not the same in every run (in the configs' order)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.config if k not in keys and k not in _IGNORED_CONFIG]
    if len(runs) < 2:
        return [k for k in _KEY_CONFIG if k in keys]
    return [k for k in keys
            if len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1]


def _history_numbers(history: pd.DataFrame | None) -> dict:
    if history is None or history.empty:
        return {}
    last = history.iloc[-1]
    out = {"epochs_run": len(history), "final_train_mae": last.get("mae")}
    if "val_mae" in history.columns and history["val_mae"].notna().any():
        best = history.loc[history["val_mae"].idxmin()]
        out.update(final_val_mae=last["val_mae"], best_val_mae=best["val_mae"],
                   best_epoch=int(best["epoch"]))
        # Overfitting shows as validation error above the (augmented, dropout-on) train error.
        out["val_minus_train_mae"] = last["val_mae"] - last.get("mae", float("nan"))
    return out


def _evaluation_numbers(evaluation: dict | None, split: str) -> dict:
    if not evaluation:
        return {}
    o = evaluation["overall"]
    bands = {r["group"]: r for r in evaluation.get("by_band", [])}
    cs = next((k for k in o if k.startswith("cs@")), "cs@5")
    return {f"{split}_mae": o["mae"], f"{split}_rmse": o["rmse"], f"{split}_{cs}": o.get(cs),
            f"{split}_bias": o["bias"], f"{split}_60+_mae": (bands.get("60+") or {}).get("mae"),
            f"{split}_60+/overall": evaluation.get("old_to_overall_mae_ratio")}


def comparison_table(runs: list[Run], split: str = "test") -> pd.DataFrame:
    """One row per run: the differing config fields, then training and evaluation figures."""
    keys = differing_config(runs)
    rows = []
    for run in runs:
        row = {"run": run.name}
        row.update({k: _cell(run.config.get(k)) for k in keys})
        row.update(_history_numbers(run.history))
        # The trainer's metrics.json: validation with the best weights restored, as exported.
        for key, column in (("val_mae", "val_mae"), ("val_cs5", "val_cs@5")):
            if key in run.trainer_metrics:
                row[column] = run.trainer_metrics[key]
        row.update(_evaluation_numbers(run.evaluations.get(split), split))
        rows.append(row)
    return pd.DataFrame(rows)


def band_mae(runs: list[Run], split: str = "test") -> pd.DataFrame:
    """MAE per age band (rows) for each run with an evaluation of `split` (columns)."""
    columns = {}
    for run in runs:
        evaluation = run.evaluations.get(split)
        if evaluation:
            by = {r["group"]: r["mae"] for r in evaluation["by_band"]}
            columns[run.name] = [by.get(b) for b in metrics.BAND_LABELS]
    return pd.DataFrame(columns, index=list(metrics.BAND_LABELS), dtype=float)


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def compare(run_dirs: list[str], output_dir: str, split: str = "test") -> pd.DataFrame:
    if not run_dirs:
        raise ValueError("give at least one RUN_DIR to compare")
    runs = [load_run(p) for p in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) < len(names):  # same basename in different parents: use full paths
        for r in runs:
            r.name = r.path
    table = comparison_table(runs, split)
    pngs = {}
    histories = {r.name: r.history for r in runs if r.history is not None and len(r.history)}
    if histories:
        pngs["learning_curves.png"] = plots.compare_learning_curves(histories)
    bands = band_mae(runs, split)
    if not bands.empty and len(bands.columns):
        pngs["band_mae.png"] = plots.compare_bands(bands)
    missing = [r.name for r in runs if split not in r.evaluations]
    text = (f"Evaluation figures are on the {split} split (trainer.evaluate output)."
            + (f" No {split} evaluation for: {', '.join(missing)}." if missing else ""))
    sections = [
        report.Section("Runs", text, [report.format_table(table)],
                       [n for n in ("learning_curves.png",) if n in pngs]),
        report.Section(f"MAE per age band ({split})", "",
                       [report.format_table(bands.reset_index(names="band"))]
                       if len(bands.columns) else [],
                       [n for n in ("band_mae.png",) if n in pngs]),
    ]
    base = output_dir.rstrip("/")
    info = {"runs": ", ".join(r.path for r in runs), "split": split}
    buf = io.StringIO()
    spreadsheet.safe_frame(table).to_csv(buf, index=False)  # run names are the user's text
    files.write_bytes(f"{base}/compare.csv", buf.getvalue().encode("utf-8"))
    report.write_report(base, title="Run comparison", info=info, sections=sections, pngs=pngs,
                        name="compare")
    return table


def main(argv):
    from absl import flags

    f = flags.FLAGS
    table = compare(argv[1:], f.output_dir, f.split)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table.to_string(index=False))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("output_dir", None, "Where compare.{csv,md,html} and plots/ go.")
    flags.DEFINE_enum("split", "test", ["train", "validation", "test"],
                      "Which evaluation output of each run to compare.")
    flags.mark_flag_as_required("output_dir")
    app.run(main)
