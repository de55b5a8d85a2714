"""bench.preprocess_scaling's image-stage rate, from worker log lines as the runner relays them."""

from bench import preprocess_scaling


def _line(seconds: int, nanos: int, loaded: int) -> str:
    # Verbatim shape of a DirectRunner (multi_processing) relay of a worker's log record.
    return (f'2026-12-01 12:02:16,963 INFO Worker: severity: INFO timestamp {{   seconds: '
            f'{seconds}   nanos: {nanos} }} message: "this worker has loaded {loaded} images '
            f'(2299 images/s)" instruction_id: "bundle_7" log_location: "pipeline.py:171"')


def test_image_stage_rate_counts_progress_lines_of_every_worker_between_first_and_last():
    # Two workers, 1,000 images per line; five lines over 2.0 s: 4,000 images after the first.
    log = "\n".join([
        "2026-12-01 12:01:30,533 INFO starting control server on port 34101",
        _line(100, 0, 1000), _line(100, 500_000_000, 1000), _line(101, 0, 2000),
        _line(101, 500_000_000, 2000), _line(102, 0, 3000),
        "2026-12-01 12:02:20,479 INFO read 5000 inputs, wrote 5000 records"])
    assert preprocess_scaling.image_stage_rate(log) == 2000.0


def test_image_stage_rate_is_unknown_without_enough_progress():
    assert preprocess_scaling.image_stage_rate(_line(100, 0, 1000)) is None
    assert preprocess_scaling.image_stage_rate("no progress at all") is None
