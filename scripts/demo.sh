#!/usr/bin/env bash
# The demo: the whole chain on the built-in synthetic sample. Called by `make demo`.
set -euo pipefail
PY=${PY:-python}
OUT=${DEMO_DIR:-demo_out}
rm -rf "$OUT"
echo "== 1/1 generate synthetic sample faces -> $OUT/sample"
"$PY" -m preprocessing.synthetic --output_dir="$OUT/sample" --num_images=600 --image_size=64 \
    --seed=0 --corrupt_fraction=0.03 --duplicate_fraction=0.02
