"""Synthetic face-like DRAWINGS (not photos of anyone) for the built-in sample data.

``sample_ages`` / ``sample_faces`` draw every random parameter at once from one seeded
``numpy.random.Generator`` (a seed fixes every image); ``render_face`` draws one row with
``PIL.ImageDraw``. Age shows in cues real faces show too, each mild so a model must combine them:
head shape, eye size and height, nose length, wrinkles and age spots, greying, thinning and
receding hair. Nuisances keep it from being trivial: skin tone, background, lighting, position
and scale, hair, gender cues, glasses, clothes and sensor noise.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MAX_SAMPLE_AGE = 95

# Age mixture shaped like UTKFace's label histogram (many 20-40, a baby spike, a thin 60+
# tail): (weight, mean, std) of Gaussians over integer ages 0..MAX_SAMPLE_AGE.
_AGE_MIXTURE = ((0.06, 1.0, 1.2), (0.08, 7.0, 4.0), (0.04, 16.0, 2.5), (0.48, 27.0, 5.5),
                (0.22, 44.0, 9.0), (0.12, 66.0, 12.0))

_SKIN_LIGHT = np.array([244, 208, 182], np.float32)
_SKIN_DARK = np.array([92, 60, 42], np.float32)
_HAIR_COLOURS = np.array([[28, 22, 20], [70, 45, 30], [115, 80, 50], [205, 170, 110],
                          [150, 70, 40]], np.float32)
_GREY_HAIR = np.array([212, 212, 215], np.float32)
_IRIS_COLOURS = np.array([[60, 40, 25], [40, 90, 140], [70, 110, 60], [25, 20, 20]], np.float32)

HAIR_SHORT, HAIR_LONG, HAIR_RECEDING = 0, 1, 2


def age_probabilities() -> np.ndarray:
    """P(age = a) for a = 0..MAX_SAMPLE_AGE (sums to 1)."""
    ages = np.arange(MAX_SAMPLE_AGE + 1, dtype=np.float64)
    density = sum(w * np.exp(-0.5 * ((ages - mu) / sd) ** 2) / sd for w, mu, sd in _AGE_MIXTURE)
    return density / density.sum()


def sample_ages(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(MAX_SAMPLE_AGE + 1, size=n, p=age_probabilities()).astype(np.int64)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, np.float32)[..., None]
    return a * (1.0 - t) + b * t


def sample_faces(rng: np.random.Generator, ages: np.ndarray, genders: np.ndarray) -> dict:
    """All random parameters for len(ages) faces, as a dict of arrays (one row per face).

    ``genders`` uses UTKFace's coding: 0 male, 1 female. Geometry is in units of the canvas
    side so that one parameter row renders the same face at any image size.
    """
    n = len(ages)
    ages = np.asarray(ages, np.float32)
    male = np.asarray(genders) == 0
    child = np.clip((18.0 - ages) / 18.0, 0.0, 1.0)  # 1 at birth, 0 from 18 on
    old = np.clip((ages - 30.0) / 50.0, 0.0, 1.0)  # 0 until 30, 1 at 80+
    u = rng.random

    hair_base = _HAIR_COLOURS[rng.integers(0, len(_HAIR_COLOURS), n)]
    # Greying starts in the mid thirties, at a person-specific pace (some stay dark longer).
    grey = np.clip((ages - 30.0) / 35.0 * rng.uniform(0.75, 1.25, n), 0.0, 1.0)
    style = np.where(u(n) < np.where(male, 0.12, 0.75), HAIR_LONG, HAIR_SHORT)
    receding = male & (u(n) < np.clip((ages - 28.0) / 55.0, 0.0, 0.65))
    style = np.where(receding, HAIR_RECEDING, style)
    adult = ages >= 18
    return {
        "age": ages,
        "child": child,
        "old": old,
        "male": male,
        "scale": u(n) * 0.08 + 0.54,  # face height / canvas side (crops are roughly aligned)
        "cx": 0.5 + rng.uniform(-0.035, 0.035, n),
        "cy": 0.47 + rng.uniform(-0.03, 0.03, n),
        "aspect": 0.74 + 0.17 * child + rng.normal(0, 0.025, n),
        "skin": _mix(_SKIN_LIGHT, _SKIN_DARK, u(n) ** 1.3) + rng.normal(0, 6, (n, 3)),
        "bg_top": rng.uniform(25, 235, (n, 3)),
        "bg_bottom": rng.uniform(25, 235, (n, 3)),
        "shirt": rng.uniform(20, 235, (n, 3)),
        "hair": _mix(hair_base, _GREY_HAIR, grey),
        # Babies' hair is sparse: blend it into the skin.
        "hair_density": np.clip(0.25 + ages / 3.0, 0.25, 1.0),
        "hair_style": style,
        "hairline": 0.2 + 0.06 * u(n) + 0.1 * receding * old,  # hair cap depth on the head
        "iris": _IRIS_COLOURS[rng.integers(0, len(_IRIS_COLOURS), n)],
        "eye_jitter": rng.normal(0, 0.012, n),
        "beard": male & adult & (u(n) < 0.3),
        "lipstick": ~male & adult & (u(n) < 0.4),
        "glasses": adult & (u(n) < 0.05 + 0.3 * old),
        "gain": rng.uniform(0.8, 1.15, n),
        "detail_seed": rng.integers(0, 2**31 - 1, n),
    }


def face_row(faces: dict, i: int) -> dict:
    return {key: value[i] for key, value in faces.items()}


def _rgb(colour) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(np.round(colour), 0, 255))


def _background(p: dict, side: int) -> Image.Image:
    t = np.linspace(0.0, 1.0, side, dtype=np.float32)[:, None, None]
    column = p["bg_top"] * (1 - t) + p["bg_bottom"] * t  # (side, 1, 3)
    return Image.fromarray(np.broadcast_to(column, (side, side, 3)).astype(np.uint8))


def _draw_wrinkles(draw, p, geo, rng, line_w):
    """Wrinkle lines whose number and darkness grow with age (none before ~30)."""
    age, old = float(p["age"]), float(p["old"])
    if old <= 0:
        return
    cx, top, fw, fh = geo["cx"], geo["top"], geo["fw"], geo["fh"]
    eye_y, ew, eh = geo["eye_y"], geo["ew"], geo["eh"]
    crease = _rgb(np.asarray(p["skin"]) * (0.82 - 0.3 * old))
    for k in range(int(round(1 + 4 * old))):  # forehead lines
        y = top + fh * (0.2 + 0.045 * k)
        half = fw * (0.2 + 0.05 * rng.random())
        draw.arc((cx - half, y, cx + half, y + fh * 0.08), 200, 340, fill=crease, width=line_w)
    if age > 38:  # crow's feet at the outer eye corners
        for side in (-1, 1):
            x0 = cx + side * (fw * 0.2 + ew * 0.55)
            for dy in (-0.6, 0.0, 0.6)[: 1 + int(age > 50) + int(age > 62)]:
                draw.line((x0, eye_y + dy * eh * 0.5, x0 + side * ew * 0.35, eye_y + dy * eh),
                          fill=crease, width=line_w)
    if age > 33:  # nasolabial folds
        for side in (-1, 1):
            box = (cx + side * fw * 0.14 - fw * 0.1, geo["nose_y"] - fh * 0.02,
                   cx + side * fw * 0.14 + fw * 0.1, geo["mouth_y"] + fh * 0.06)
            draw.arc(box, 90 if side > 0 else 180, 270 if side < 0 else 360,
                     fill=crease, width=line_w)
    if age > 45:  # under-eye bags
        for side in (-1, 1):
            ex = cx + side * fw * 0.2
            draw.arc((ex - ew * 0.5, eye_y, ex + ew * 0.5, eye_y + eh * 1.4), 20, 160,
                     fill=crease, width=line_w)
    if age > 58:  # age spots
        spot = _rgb(np.asarray(p["skin"]) * 0.7)
        for _ in range(int((age - 55) / 6)):
            x = cx + fw * rng.uniform(-0.35, 0.35)
            y = top + fh * rng.uniform(0.15, 0.8)
            r = fw * 0.015
            draw.ellipse((x - r, y - r, x + r, y + r), fill=spot)


def render_face(p: dict, image_size: int, blur_sigma: float = 0.0) -> Image.Image:
    """Draws one face row from ``sample_faces`` as an image_size x image_size RGB image.

    Drawn at twice the size and downsampled: PIL's ImageDraw does not antialias, and at 64 px
    the aliasing would otherwise swamp the thin wrinkle lines. ``blur_sigma`` (pixels at the
    output size) applies a Gaussian blur, as an out-of-focus camera would, before noise.
    """
    side = 2 * image_size
    rng = np.random.default_rng(int(p["detail_seed"]))
    child, old = float(p["child"]), float(p["old"])
    fh = side * float(p["scale"])
    fw = fh * float(p["aspect"])
    cx, cy = side * float(p["cx"]), side * float(p["cy"])
    top, bottom = cy - fh / 2, cy + fh / 2
    line_w = max(1, round(side / 96))
    skin = np.asarray(p["skin"], np.float32)
    hair = _rgb(_mix(skin, np.asarray(p["hair"]), float(p["hair_density"])))
    skin_c, shade = _rgb(skin), _rgb(skin * 0.8)

    img = _background(p, side)
    draw = ImageDraw.Draw(img)
    # Body first, then hair behind the head, then the head on top.
    draw.ellipse((cx - fw * 1.05, bottom + fh * 0.05, cx + fw * 1.05, bottom + fh * 1.4),
                 fill=_rgb(p["shirt"]))
    draw.rectangle((cx - fw * 0.2, cy + fh * 0.3, cx + fw * 0.2, bottom + fh * 0.15), fill=shade)
    if p["hair_style"] == HAIR_LONG:
        draw.ellipse((cx - fw * 0.62, top - fh * 0.07, cx + fw * 0.62, cy + fh * 0.6), fill=hair)
    # Children's eyes sit lower on the head (big cranium) and are larger relative to the face.
    eye_y = top + fh * (0.45 + 0.11 * child + float(p["eye_jitter"]))
    ew = fw * (0.15 + 0.06 * child)
    eh = ew * (0.55 + 0.15 * child) * (1 - 0.25 * old)
    for side_sign in (-1, 1):
        ex = cx + side_sign * fw * 0.5
        draw.ellipse((ex - fw * 0.07, eye_y - fh * 0.08, ex + fw * 0.07, eye_y + fh * 0.1),
                     fill=shade)  # ear
    draw.ellipse((cx - fw / 2, top, cx + fw / 2, bottom), fill=skin_c)
    hairline = fh * float(p["hairline"])
    cap = (cx - fw * 0.54, top - fh * 0.07, cx + fw * 0.54, top + 2 * hairline)
    if p["hair_style"] == HAIR_RECEDING:  # hair only at the sides and back
        draw.chord(cap, 150, 210, fill=hair)
        draw.chord(cap, 330, 30, fill=hair)
    else:
        draw.chord(cap, 180, 360, fill=hair)

    nose_y = eye_y + fh * (0.12 + 0.07 * (1 - child))
    mouth_y = nose_y + fh * (0.08 + 0.03 * (1 - child))
    geo = {"cx": cx, "top": top, "fw": fw, "fh": fh, "eye_y": eye_y, "ew": ew, "eh": eh,
           "nose_y": nose_y, "mouth_y": mouth_y}
    if p["beard"]:
        beard = _rgb(_mix(skin, np.asarray(p["hair"]), 0.55 + 0.4 * rng.random()))
        draw.chord((cx - fw / 2, top, cx + fw / 2, bottom), 15, 165, fill=beard)
    _draw_wrinkles(draw, p, geo, rng, line_w)

    brow = _rgb(p["hair"])
    for s in (-1, 1):
        ex = cx + s * fw * 0.2
        draw.ellipse((ex - ew / 2, eye_y - eh / 2, ex + ew / 2, eye_y + eh / 2), fill=(240,) * 3)
        r = eh * (0.42 + 0.1 * child)
        draw.ellipse((ex - r, eye_y - r, ex + r, eye_y + r), fill=_rgb(p["iris"]))
        draw.ellipse((ex - r / 2, eye_y - r / 2, ex + r / 2, eye_y + r / 2), fill=(10, 10, 10))
        by = eye_y - eh * 0.9 - fh * 0.025
        draw.line((ex - ew * 0.6, by, ex + ew * 0.6, by - fh * 0.01),
                  fill=brow, width=line_w * (2 if p["male"] else 1))
        if p["glasses"]:
            gr = ew * 0.75
            draw.ellipse((ex - gr, eye_y - gr, ex + gr, eye_y + gr), outline=(30, 30, 30),
                         width=line_w)
    if p["glasses"]:
        draw.line((cx - fw * 0.2 + ew * 0.75, eye_y, cx + fw * 0.2 - ew * 0.75, eye_y),
                  fill=(30, 30, 30), width=line_w)
    draw.line((cx, eye_y + fh * 0.05, cx - fw * 0.04, nose_y), fill=shade, width=line_w)
    draw.line((cx - fw * 0.04, nose_y, cx + fw * 0.04, nose_y), fill=shade, width=line_w)
    mw = fw * (0.3 - 0.06 * child)
    lips = (170, 40, 60) if p["lipstick"] else _rgb(skin * np.array([0.85, 0.6, 0.6]))
    draw.chord((cx - mw / 2, mouth_y - fh * 0.03, cx + mw / 2, mouth_y + fh * 0.04), 0, 180,
               fill=lips)

    img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
    if blur_sigma > 0:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(blur_sigma)))
    pixels = np.asarray(img, np.float32) * float(p["gain"])
    pixels += rng.normal(0.0, 2.5, pixels.shape)  # sensor noise, as a camera adds
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
