"""Why an input was rejected: the codes written to OUT/errors/*.jsonl and counted in stats.json.

One list, so the synthetic sample's manifest, the pipeline and the tests speak the same words.
"""

MISSING_FILE = "missing_file"  # the label names a file that is not there
EMPTY_FILE = "empty_file"  # zero bytes
UNREADABLE_IMAGE = "unreadable_image"  # not a known image format, or not readable
OUTSIDE_IMAGES_ROOT = "outside_images_root"  # the name resolves outside --images (.., symlink)
NOT_A_REGULAR_FILE = "not_a_regular_file"  # a folder, FIFO, device or socket
FILE_TOO_LARGE = "file_too_large"  # more than --max_file_bytes
TRUNCATED_IMAGE = "truncated_image"  # header fine, pixel data cut short
TOO_MANY_PIXELS = "too_many_pixels"  # decompression-bomb guard (--max_pixels)
EXTREME_ASPECT_RATIO = "extreme_aspect_ratio"  # upscaling-bomb guard (--max_aspect_ratio)
ZERO_SIZE_IMAGE = "zero_size_image"  # decodes to a 0-width or 0-height image
BAD_AGE = "bad_age"  # non-numeric, negative, NaN or above the maximum age
BAD_ROW = "bad_row"  # a label row (or file name) that could not be understood
DUPLICATE_FILE_NAME = "duplicate_file_name"  # the same file named twice in the labels
DUPLICATE_CONFLICT = "duplicate_conflict"  # identical image bytes carrying different labels
NO_FACE = "no_face"  # --face=detect|align found no face in the photo
MULTI_FACE = "multi_face"  # several faces under --multi_face=reject

ALL = (MISSING_FILE, EMPTY_FILE, UNREADABLE_IMAGE, OUTSIDE_IMAGES_ROOT, NOT_A_REGULAR_FILE,
       FILE_TOO_LARGE, TRUNCATED_IMAGE, TOO_MANY_PIXELS, EXTREME_ASPECT_RATIO, ZERO_SIZE_IMAGE,
       BAD_AGE, BAD_ROW, DUPLICATE_FILE_NAME, DUPLICATE_CONFLICT, NO_FACE, MULTI_FACE)
