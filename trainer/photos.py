"""Faces in whole photos for the project's clients (trainer.predict, deploy.serve): the upright
photo's pixels, its face crops largest first, and the photo annotated with boxes and ages.

A crop is handed to the model as lossless PNG bytes, so the model frames it exactly as
``serving_default`` frames any photo (the stored ``resize`` and ``margin``): trainer.predict and
the Vertex client send the same pixels. ``detect`` crops the detector's box; ``align`` maps the
face onto the aligned-crop template (imaging.faces.align: eyes level, eye-to-mouth
distance fixed). No TensorFlow import at module level: the detector loads on first use.
"""

from __future__ import annotations

import csv
import io
import json
import sys

import numpy as np
from PIL import Image, ImageDraw

from contract import limits
from contract.framing import FACE_MODES
from imaging import faces, images
from trainer import spreadsheet

ALIGNED_SIDE = 200  # the side of UTKFace's aligned crops, which the template describes
_COLOURS = ((255, 64, 64), (64, 200, 255), (255, 210, 0), (120, 255, 120))


def check_mode(mode: str) -> str:
    if mode not in FACE_MODES:
        raise ValueError(f"face={mode!r}: must be one of {', '.join(FACE_MODES)}")
    return mode


def upright_rgb(data: bytes, max_pixels: int = limits.MAX_PIXELS) -> np.ndarray:
    """Encoded photo -> uint8 [H, W, 3], EXIF orientation applied as preprocessing applies it.

    The header is checked against contract.limits before decoding
    (trainer.orientation.check_header); raises imaging.images.ImageError (a ValueError).
    """
    from trainer.orientation import check_header

    check_header(data, max_pixels=max_pixels)
    return np.asarray(images.to_rgb(images.decode(data, max_pixels)))


def face_crops(rgb: np.ndarray, mode: str, detector=None) -> list[tuple[faces.Face, np.ndarray]]:
    """(face, uint8 crop) for every face found in the photo, the largest box first."""
    check_mode(mode)
    if mode == "none":
        raise ValueError("face_crops needs face=detect or face=align")
    found = sorted(faces.detect(rgb, detector), key=lambda f: -f.area)
    out = []
    for face in found:
        crop = (faces.align(rgb, face, ALIGNED_SIDE) if mode == "align"
                else faces.crop_box(rgb, face))
        out.append((face, crop))
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def face_row(path: str, index: int, face: faces.Face, age: float,
             std: float | None = None) -> dict:
    """One face's result as printed: file, face index, box x0,y0,x1,y1, score, age (and the
    age's std for dex models)."""
    return {"file": path, "face": index, "box": [round(float(v), 1) for v in face.box],
            "score": round(float(face.score), 4), **image_row(path, age, std, file=False)}


def image_row(path: str, age: float, std: float | None = None, file: bool = True) -> dict:
    """One image's result: file, age, and age_std when the model gives one (dex)."""
    row = {"file": path} if file else {}
    row["age"] = round(float(age), 2)
    if std is not None:
        row["age_std"] = round(float(std), 2)
    return row


def annotate(rgb: np.ndarray, found, ages, path: str) -> None:
    """Writes the photo with each face's box and age drawn to ``path`` (format from its suffix)."""
    image = Image.fromarray(np.asarray(rgb, np.uint8))
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 300))
    for i, (face, age) in enumerate(zip(found, ages, strict=True)):
        colour = _COLOURS[i % len(_COLOURS)]
        x0, y0, x1, y1 = face.box
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        label = f"#{i} {float(age):.1f}"
        text_box = draw.textbbox((x0, y0), label)
        top = y0 - (text_box[3] - text_box[1]) - 2 * width
        top = top if top >= 0 else y1 + width  # below the box when there is no room above
        left, right = draw.textbbox((x0, top), label)[::2]
        draw.rectangle((left - 1, top - 1, right + 1, top + text_box[3] - text_box[1] + 3),
                       fill=colour)
        draw.text((x0, top), label, fill=(0, 0, 0))
    image.save(path)


def write_rows(rows: list[dict], as_json: bool, out=None) -> None:
    """Rows as JSON lines, or as CSV with spreadsheet-safe file names (face_row's columns, or
    file,age for rows without a face)."""
    out = out or sys.stdout
    if as_json:
        for row in rows:
            print(json.dumps(row), file=out)
        return
    writer = csv.writer(out, lineterminator="\n")
    std = ["age_std"] if rows and "age_std" in rows[0] else []
    if rows and "face" in rows[0]:
        writer.writerow(["file", "face", "x0", "y0", "x1", "y1", "score", "age", *std])
        for r in rows:
            writer.writerow([spreadsheet.safe_cell(r["file"]), r["face"], *r["box"], r["score"],
                             *(f"{r[k]:.2f}" for k in ("age", *std))])
    else:
        writer.writerow(["file", "age", *std])
        for r in rows:
            writer.writerow([spreadsheet.safe_cell(r["file"]),
                             *(f"{r[k]:.2f}" for k in ("age", *std))])
