"""contract.framing: one validated value, read from stats.json and written back alike, and the
image-size range every stage's --image_size shares."""

import json

import numpy as np
import pytest

from contract import limits
from contract.framing import (
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    Framing,
    FramingError,
    draft_size,
    image_size_problem,
)
from contract.stats import Stats


@pytest.mark.parametrize("kwargs, field", [
    ({"image_size": 0}, "image_size=0"),
    ({"image_size": True}, "image_size=True"),
    ({"image_size": "64"}, "image_size='64'"),
    ({"resize": "stretch"}, "resize='stretch'"),
    ({"margin": 0.5}, "margin=0.5"),
    ({"margin": -0.1}, "margin=-0.1"),
    ({"margin": float("nan")}, "margin=nan"),
    ({"max_pixels": 0}, "max_pixels=0"),
    ({"max_aspect_ratio": 0.5}, "max_aspect_ratio=0.5"),
    ({"max_aspect_ratio": float("inf")}, "max_aspect_ratio=inf"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(FramingError) as e:
        Framing(**{"image_size": 64, **kwargs})
    assert str(e.value).startswith(field + ":")
    assert e.value.field == field.split("=")[0]


def test_values_are_normalised_and_round_trip_through_json():
    framing = Framing(np.int64(64), "pad", 0, np.int64(1000), 2)
    assert framing == Framing(64, "pad", 0.0, 1000, 2.0)
    assert type(framing.image_size) is int and type(framing.margin) is float
    assert Framing.from_dict(json.loads(json.dumps(framing.to_dict()))) == framing
    with pytest.raises(FramingError, match=r"^m.json: image_size=None: is missing"):
        Framing.from_dict({"resize": "pad"}, "m.json")
    with pytest.raises(FramingError, match=r"^m.json: margin=0.7"):
        Framing.from_dict({"image_size": 8, "margin": 0.7}, "m.json")


def test_from_stats_old_and_new_files():
    old = Stats.from_dict({"image_size": 16, "splits": {"train": {"count": 1}}})
    # A stats.json written before the framing was recorded: the centre crop it was made with.
    assert Framing.from_stats(old) == Framing(16, "crop", 0.0, limits.MAX_PIXELS,
                                              limits.MAX_ASPECT_RATIO)
    new = Stats.from_dict({"splits": {}, **Framing(64, "pad", 0.1, 5000, 3.0).to_dict()})
    assert Framing.from_stats(new) == Framing(64, "pad", 0.1, 5000, 3.0)
    # The model's input side replaces the records' own; 0 keeps it.
    assert Framing.from_stats(new, image_size=96).image_size == 96
    unrecorded = Stats.from_dict({"splits": {}})
    with pytest.raises(FramingError, match=r"^/d/stats.json: image_size=0"):
        Framing.from_stats(unrecorded, source="/d/stats.json")


def test_served_caps_only_the_pixel_limit():
    assert Framing(32).served().max_pixels == limits.SERVING_MAX_PIXELS < limits.MAX_PIXELS
    assert Framing(32, max_pixels=1000).served() == Framing(32, max_pixels=1000)
    assert Framing(32, "pad", 0.2).same_geometry(Framing(64, "pad", 0.2, 10))
    assert not Framing(32, "pad", 0.2).same_geometry(Framing(32, "crop", 0.2))


def test_draft_size_covers_the_trimmed_square():
    assert draft_size(32, 0.0) == 32
    assert draft_size(32, 0.25) == 64  # half of each side is trimmed away
    assert Framing(30, margin=0.1).draft_size() == 38  # ceil(30 / 0.8)


def test_image_size_range_is_the_flags_range():
    assert image_size_problem(MIN_IMAGE_SIZE) is None
    assert image_size_problem(MAX_IMAGE_SIZE) is None
    for bad in (MIN_IMAGE_SIZE - 1, MAX_IMAGE_SIZE + 1, 64.0, True):
        assert f"{MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}" in image_size_problem(bad)
