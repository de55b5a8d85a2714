"""trainer.orientation.check_header: refusals carry the same reason codes as preprocessing's."""

import pytest

from contract import reasons
from deploy.hostile_images import flat_png
from imaging import images
from trainer import orientation


@pytest.mark.parametrize("width, height, reason", [
    (1, 20_000, reasons.EXTREME_ASPECT_RATIO), (5000, 5000, reasons.TOO_MANY_PIXELS)])
def test_size_refusals_name_the_reason_code(width, height, reason):
    with pytest.raises(images.ImageError) as e:
        orientation.check_header(flat_png(width, height), max_pixels=1_000_000)
    assert e.value.reason == reason
    assert orientation.check_header(flat_png(40, 30)) == "PNG"
