"""Test helper: a non-square photo whose upright content differs from how it is stored."""

from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION = 0x0112
# What a viewer does to the stored pixels to show the photo upright (EXIF 6 and 8), and the
# inverse a camera applied when it stored an upright scene sideways.
_STORE = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def upright_face(width: int = 48, height: int = 32) -> Image.Image:
    """Left half black, right half white: a left-half model tells it from any rotation.

    The edge sits on a multiple of 16 so a high-quality JPEG keeps the halves nearly flat.
    """
    pixels = np.full((height, width, 3), 255, np.uint8)
    pixels[:, : width // 2] = 0
    return Image.fromarray(pixels)


def save_sideways(upright: Image.Image, path: Path, orientation: int) -> Path:
    """Stores ``upright`` rotated, as a JPEG whose EXIF orientation turns it back."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    upright.transpose(_STORE[orientation]).save(path, "JPEG", quality=100, subsampling=0,
                                                exif=exif.tobytes())
    return path
