"""Recipe ablation on validation: each lever against the CPU recipe, at the same time budget.

    python -m bench.ablation --data_dir=../shared/data/utkface [--budget_minutes 6] [--rows ...]

Each row is the recipe the levers were screened against (bench.quality.SCREENING_RECIPE; the
winners went into bench.quality.RECIPE) with some trainer flags changed. A short
calibration run of the row measures its step and validation costs (not counted, so every row
gets the same training time); the row then trains EPOCHS short epochs whose steps fill the
budget (``--steps_per_epoch``: whole passes over the data would round a few-minute budget to one
or two epochs, so rows would differ by up to a pass) and is evaluated on the validation split. The
test split is never read here: it is for the final recipe, once (bench.quality). Records are
preprocessed once per size the rows need, into WORK/data<size>, and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import quality  # noqa: E402
from contract import stats as stats_file  # noqa: E402
from trainer import evaluate  # noqa: E402

# key -> (what changes, records size, trainer flags over the recipe's).
ROWS = {
    "recipe": ("the CPU recipe (MobileNetV3-Small, 96 px)", 96, []),
    "112px": ("112 px (from 128 px records)", 128, ["--image_size=112"]),
    "128px": ("128 px", 128, ["--image_size=128"]),
    "large": ("MobileNetV3-Large", 96, ["--backbone=mobilenet_v3_large"]),
    "minimalistic": ("MobileNetV3-Small minimalistic (ReLU, no squeeze-excite)", 96,
                     ["--backbone=mobilenet_v3_small_minimalistic"]),
    "ema": ("EMA of the weights, momentum 0.99", 96, ["--ema_momentum=0.99"]),
    "lr4e-3": ("peak LR 4e-3 (recipe 2e-3)", 96, ["--fine_tune_learning_rate=4e-3"]),
    "sigma3": ("DLDL label sigma 3 years (recipe 2)", 96, ["--dex_sigma=3"]),
    "bf16": ("bf16 mixed precision", 96, ["--dtype=bf16"]),
}


EPOCHS = 8  # per row: enough for the recipe's warm-up and decay to take shape


def plan_steps(budget_s: float, calibration: dict) -> int:
    """Steps per epoch such that EPOCHS epochs (steps, precise BN and validation each, and the
    first epoch's tracing) fill budget_s."""
    per_epoch = ((budget_s - calibration["first_epoch_extra_seconds"]) / EPOCHS
                 - calibration["seconds_per_epoch_overhead"])
    return max(1, int(per_epoch / calibration["seconds_per_step"]))


def run_row(name: str, data_dir: Path, work: Path, budget_s: float, flags: list[str]) -> dict:
    recipe = quality.with_flags(quality.SCREENING_RECIPE, *flags)
    work.mkdir(parents=True, exist_ok=True)
    steps = plan_steps(budget_s, quality.calibrate(data_dir, work, recipe))
    n_train = stats_file.read(str(data_dir)).splits["train"].count
    passes = EPOCHS * steps * quality.batch_size(recipe) / n_train
    print(f"{name}: {EPOCHS} epochs of {steps} steps ({passes:.2f} passes)", flush=True)
    model_dir, seconds = quality.train(data_dir, work, EPOCHS,
                                       (*recipe, f"--steps_per_epoch={steps}"))
    report = evaluate.evaluate(str(model_dir), str(data_dir), "validation", str(work / "eval"))
    o = report["overall"]
    return {"row": name, "flags": flags, "steps": EPOCHS * steps, "passes": passes,
            "train_minutes": sum(quality.history_seconds(model_dir)) / 60,
            "wall_train_minutes": seconds / 60, "val_mae": o["mae"], "val_cs@5": o["cs@5"],
            "old_ratio": report["old_to_overall_mae_ratio"]}


def table(rows: list[dict], budget_minutes: float) -> str:
    base = rows[0]["val_mae"]  # the recipe's (main puts it first)
    lines = [f"Validation, {budget_minutes:g} min of training per row (2 CPU cores)", "",
             "| row | steps | passes over train | epoch min (sum) | val MAE | vs recipe | val CS@5 "
             "| 60+ / overall |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['steps']} | {r['passes']:.2f} | "
                     f"{r['train_minutes']:.1f} | "
                     f"{r['val_mae']:.2f} | {r['val_mae'] - base:+.2f} | {r['val_cs@5']:.3f} | "
                     f"{r['old_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="../shared/data/utkface")
    p.add_argument("--work_dir", default="bench_out/ablation")
    p.add_argument("--budget_minutes", type=float, default=6.0, help="training time per row")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated keys of ROWS")
    args = p.parse_args(argv)
    raw, work = Path(args.data_dir).resolve(), Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results_file = work / "results.json"
    done = json.loads(results_file.read_text()) if results_file.exists() else {}
    # The recipe row is always run, first: every other row is read against it.
    names = ["recipe", *(n for n in args.rows.split(",") if n != "recipe")]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        p.error(f"--rows: unknown {unknown}; choose from {list(ROWS)}")
    for name in names:
        if name in done:  # rerunning resumes: finished rows are kept
            continue
        label, size, flags = ROWS[name]
        size_dir = work / f"data{size}"
        size_dir.mkdir(exist_ok=True)
        data_dir = quality.preprocess(raw, size_dir, size, 0)
        started = time.time()
        done[name] = run_row(label, data_dir, work / f"row_{name}", args.budget_minutes * 60, flags)
        done[name]["wall_minutes"] = (time.time() - started) / 60
        results_file.write_text(json.dumps(done, indent=2))
    text = table([done[n] for n in names], args.budget_minutes)
    (work / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
