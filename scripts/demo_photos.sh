#!/usr/bin/env bash
# The whole-photo path: scenes made of the NASA astronaut portrait (public domain, shipped by
# scikit-image) -> trainer.predict --face=align (MTCNN, eyes levelled, the model's framing) ->
# one JSON line per face and each photo annotated. Called by `make demo-photos`; uses
# DEMO_MODEL if set (any trainer MODEL_DIR), else the model `make demo` wrote to DEMO_DIR/model,
# running `make demo`'s script first when there is none.
set -euo pipefail
PY=${PY:-python}
OUT=${DEMO_DIR:-demo_out}
PHOTOS="$OUT/photos"
MODEL=${DEMO_MODEL:-$OUT/model}
export TF_CPP_MIN_LOG_LEVEL=2

if [ -z "${DEMO_MODEL:-}" ] && [ ! -f "$OUT/model/saved_model/saved_model.pb" ]; then
    echo "== no demo model in $OUT/model: running the demo (scripts/demo.sh) to train one"
    DEMO_DIR="$OUT" PY="$PY" bash "$(dirname "$0")/demo.sh"
fi

echo "== 1/2 compose 4 photos of the astronaut portrait (7 faces, 40-300 px, tilted up to 30 deg)"
rm -rf "$PHOTOS"
"$PY" -m preprocessing.scenes --output_dir="$PHOTOS" --num_scenes=4 --seed=2

echo "== 2/2 trainer.predict --face=align --json --annotate=$PHOTOS/annotated (one line per face)"
"$PY" -m trainer.predict --model="$MODEL" --face=align --json \
    --annotate="$PHOTOS/annotated" "$PHOTOS"/scenes/*.jpg
echo "Ground truth (boxes, tilt) in $PHOTOS/truth.jsonl; photos with boxes and ages drawn in" \
    "$PHOTOS/annotated/."
if [ -z "${DEMO_MODEL:-}" ]; then
    echo "make demo's model learnt from drawn synthetic faces: its ages for a photo of a real" \
        "person show the path working, not an estimate of her age (DEMO_MODEL=MODEL_DIR uses" \
        "another model)."
fi
