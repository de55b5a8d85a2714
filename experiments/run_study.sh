#!/usr/bin/env bash
# The study's comparisons, each a pair of trainer runs that differ in one setting, on any
# preprocessed DATA_DIR, with a CPU-sized backbone:
#
#   experiments/run_study.sh DATA_DIR OUT_DIR
#
#   weights      scratch (--weights=none)        vs pretrained (--weights=$PRETRAINED)
#   head         regression                      vs dex
#   weighting    --sample_weighting=none         vs lds
#   stages       one stage (--freeze_epochs=0)   vs two stages (head first), both pretrained
#   augment      --augment=default               vs none
#   data_size    all training records            vs $SMALL_FRACTION of them (overfitting)
#
# Every run trains with python -m trainer.task into OUT_DIR/runs/NAME, is evaluated on the test
# split into OUT_DIR/runs/NAME/eval_test, and each comparison is written by trainer.compare to
# OUT_DIR/compare_<comparison>/compare.{md,html,csv}; OUT_DIR/compare_all/ has every run.
# Finished runs are skipped when the script is re-run (delete a run dir to redo it). A failed
# run is reported and left out; the rest of the study goes on.
#
# Knobs (environment variables):
#   PY=python  BACKBONE=mobilenet_v3_small  IMAGE_SIZE=0 (= stats.json)  EPOCHS=10
#   BATCH=64  PRETRAINED=imagenet (or a weights file; "skip" drops the pretrained runs, as on
#   machines that cannot download ImageNet weights)  SCRATCH_LR=2e-3  PRETRAINED_LR=1e-4
#   SMALL_FRACTION=0.1  EXTRA_FLAGS="" (appended to every trainer command)
set -uo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 DATA_DIR OUT_DIR" >&2
  exit 2
fi
DATA=$1
OUT=$2
PY=${PY:-python}
BACKBONE=${BACKBONE:-mobilenet_v3_small}
IMAGE_SIZE=${IMAGE_SIZE:-0}
EPOCHS=${EPOCHS:-10}
BATCH=${BATCH:-64}
PRETRAINED=${PRETRAINED:-imagenet}
SCRATCH_LR=${SCRATCH_LR:-2e-3}
PRETRAINED_LR=${PRETRAINED_LR:-1e-4}
SMALL_FRACTION=${SMALL_FRACTION:-0.1}
EXTRA_FLAGS=${EXTRA_FLAGS:-}

if [[ ! -f "$DATA/stats.json" ]]; then
  echo "error: DATA_DIR '$DATA' has no stats.json: pass the output_dir of preprocessing.run" >&2
  exit 2
fi
mkdir -p "$OUT/runs"
FAILED=()

# Settings shared by every run. The scratch runs train everything from the first epoch, so
# their whole schedule is the "fine-tune" stage and runs at SCRATCH_LR.
COMMON=(--backbone="$BACKBONE" --image_size="$IMAGE_SIZE" --epochs="$EPOCHS"
        --batch_size="$BATCH" --verbose=2)
SCRATCH=(--weights=none --freeze_epochs=0 --fine_tune_learning_rate="$SCRATCH_LR")
PRE_ONE=(--weights="$PRETRAINED" --freeze_epochs=0 --fine_tune_learning_rate="$PRETRAINED_LR")
PRE_TWO=(--weights="$PRETRAINED" --freeze_epochs=2 --head_learning_rate=1e-3
         --fine_tune_learning_rate="$PRETRAINED_LR")

# run NAME DATA_DIR FLAGS...: train (unless done) and evaluate on the test split.
run() {
  local name=$1 data=$2
  shift 2
  local dir="$OUT/runs/$name"
  if [[ ! -f "$dir/metrics.json" || ! -d "$dir/saved_model" ]]; then
    echo "== train $name: $*"
    # shellcheck disable=SC2086  # EXTRA_FLAGS is a list of flags on purpose
    if ! "$PY" -m trainer.task --data_dir="$data" --model_dir="$dir" "${COMMON[@]}" "$@" \
        $EXTRA_FLAGS > >(tee "$OUT/runs/$name.log") 2>&1; then
      echo "!! $name: training failed (see $OUT/runs/$name.log)" >&2
      FAILED+=("$name")
      return 1
    fi
  fi
  if [[ ! -f "$dir/eval_test/metrics.json" ]]; then
    echo "== evaluate $name"
    if ! "$PY" -m trainer.evaluate --model="$dir" --data_dir="$data" --split=test \
        --output_dir="$dir/eval_test" --tta_flip; then
      echo "!! $name: evaluation failed" >&2
      FAILED+=("$name")
      return 1
    fi
  fi
}

# compare NAME RUN...: side by side, over the runs that finished.
compare() {
  local name=$1
  shift
  local dirs=()
  for r in "$@"; do
    [[ -f "$OUT/runs/$r/eval_test/metrics.json" ]] && dirs+=("$OUT/runs/$r")
  done
  if [[ ${#dirs[@]} -lt 2 ]]; then
    echo "-- $name: fewer than two finished runs, no comparison" >&2
    return 0
  fi
  echo "== compare $name"
  "$PY" -m trainer.compare "${dirs[@]}" --output_dir="$OUT/compare_$name"
}

run base "$DATA" "${SCRATCH[@]}"
run dex "$DATA" "${SCRATCH[@]}" --head=dex
run lds "$DATA" "${SCRATCH[@]}" --sample_weighting=lds
run no_augment "$DATA" "${SCRATCH[@]}" --augment=none
SMALL="$OUT/data_small"
if [[ -f "$SMALL/stats.json" ]] || "$PY" -m experiments.subset_data --data_dir="$DATA" \
    --output_dir="$SMALL" --train_fraction="$SMALL_FRACTION"; then
  run small_data "$SMALL" "${SCRATCH[@]}"
else
  FAILED+=("small_data")
fi
if [[ "$PRETRAINED" != "skip" ]]; then
  run pretrained "$DATA" "${PRE_ONE[@]}"
  run pretrained_two_stage "$DATA" "${PRE_TWO[@]}"
fi

compare weights base pretrained
compare head base dex
compare weighting base lds
compare stages pretrained pretrained_two_stage
compare augment base no_augment
compare data_size base small_data
compare all base dex lds no_augment small_data pretrained pretrained_two_stage

if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "study finished with failed runs: ${FAILED[*]}" >&2
  exit 1
fi
echo "study finished: $OUT/compare_*/compare.md"
