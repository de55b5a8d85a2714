from contract import limits


def test_normal_photo_passes():
    assert limits.size_problem(200, 200) is None
    assert limits.size_problem(4000, 3000) is None


def test_pixel_limit_names_the_size():
    kind, message = limits.size_problem(8000, 8000)
    assert kind == limits.PIXELS and "8000x8000" in message


def test_strip_images_break_the_aspect_limit_either_way():
    for width, height in ((1, 20_000), (100_000, 1), (11, 1)):
        kind, message = limits.size_problem(width, height)
        assert kind == limits.ASPECT and f"{width}x{height}" in message
    assert limits.size_problem(10, 1) is None  # exactly the limit is allowed
    assert limits.size_problem(3, 1, max_aspect_ratio=2.0)[0] == limits.ASPECT
