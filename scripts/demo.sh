#!/usr/bin/env bash
# The demo: the whole chain on the built-in SYNTHETIC sample faces, a few minutes on 2 CPU cores.
# generate -> preprocess (Beam DirectRunner) -> train (MobileNetV3-Small from scratch) ->
# evaluate (report) -> predict with the exported SavedModel. Called by `make demo`.
set -euo pipefail
PY=${PY:-python}
OUT=${DEMO_DIR:-demo_out}
NUM_IMAGES=${DEMO_NUM_IMAGES:-2000}
EPOCHS=${DEMO_EPOCHS:-12}
export TF_CPP_MIN_LOG_LEVEL=2
rm -rf "$OUT"

echo "== 1/5 generate $NUM_IMAGES synthetic faces (+3% broken, +2% duplicates) -> $OUT/sample"
"$PY" -m preprocessing.synthetic --output_dir="$OUT/sample" --num_images="$NUM_IMAGES" \
    --image_size=64 --seed=0 --corrupt_fraction=0.03 --duplicate_fraction=0.02

echo "== 2/5 preprocess with Beam (DirectRunner) -> $OUT/records"
"$PY" -m preprocessing.run --runner=DirectRunner --labels="$OUT/sample/labels.csv" \
    --images="$OUT/sample/images" --output_dir="$OUT/records" --image_size=64 --num_shards=2 \
    2>&1 | grep -E "INFO (read|wrote)|rejected|ERROR" || true
echo "   dead letters: $(cat "$OUT"/records/errors/*.jsonl | wc -l) rejected inputs in $OUT/records/errors/"

echo "== 3/5 train MobileNetV3-Small from scratch, $EPOCHS epochs -> $OUT/model"
"$PY" -m trainer.task --data_dir="$OUT/records" --model_dir="$OUT/model" \
    --backbone=mobilenet_v3_small --weights=none --head=dex --freeze_epochs=0 \
    --epochs="$EPOCHS" --batch_size=64 --fine_tune_learning_rate=3e-3 --cache --verbose=2

echo "== 4/5 evaluate on the test split -> $OUT/eval/report.html"
"$PY" -m trainer.evaluate --model="$OUT/model" --data_dir="$OUT/records" --split=test \
    --output_dir="$OUT/eval"
sed -n '1,25p' "$OUT/eval/report.md"

echo "== 5/5 predict with the exported SavedModel"
mapfile -t FACES < <(ls "$OUT"/sample/images/*.jpg | head -n 3)
"$PY" -m trainer.predict --model="$OUT/model/saved_model" "${FACES[@]}"
grep -E "$(basename -a "${FACES[@]}" | paste -sd'|')" "$OUT/sample/labels.csv" \
    | sed 's/^/   label: /'
echo "Done. Open $OUT/eval/report.html for the report."
