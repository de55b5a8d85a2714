"""Input limits shared by every stage that reads, decodes or resizes an image.

A photo's header can claim anything, and a few hundred bytes can describe an image whose decode
or resize needs gigabytes: each stage checks the claimed size against these limits before it
decodes, and the framing's resize output stays bounded by the aspect-ratio limit (a 1xN strip
scaled so its short side fills the square would otherwise grow N times the square).
"""

from __future__ import annotations

MAX_READ_BYTES = 64 * 2**20  # the largest input file read at all
MAX_PIXELS = 40_000_000  # width x height declared in the header
MAX_ASPECT_RATIO = 10.0  # long side / short side; no face photo is that elongated

PIXELS = "pixels"
ASPECT = "aspect_ratio"


def size_problem(width: int, height: int, *, max_pixels: int = MAX_PIXELS,
                 max_aspect_ratio: float = MAX_ASPECT_RATIO) -> tuple[str, str] | None:
    """(PIXELS or ASPECT, a message) when a width x height image breaks a limit, else None."""
    if width * height > max_pixels:
        return PIXELS, f"{width}x{height} = {width * height} pixels > max_pixels {max_pixels}"
    short, long = min(width, height), max(width, height)
    if short > 0 and long / short > max_aspect_ratio:
        return ASPECT, (f"{width}x{height} has aspect ratio {long / short:.1f} > "
                        f"max_aspect_ratio {max_aspect_ratio:g}")
    return None

# The SavedModel's serving_default decodes on a shared server, where a PNG costs about
# 12 bytes per pixel while it is decoded and framed: a lower bound than preprocessing's.
SERVING_MAX_PIXELS = 16_000_000
