"""Entry point: ``python -m preprocessing.run --labels=... --images=... --output_dir=...``.

Parses the flags (the job's own ones and Beam's), then calls ``pipeline.run``, the same function
the tests call. Flags: ``python -m preprocessing.run --help``; Beam's runner flags (--runner,
--direct_num_workers, --project, --region, --temp_location, --setup_file, ...) pass through.
"""

from __future__ import annotations

import logging
import platform
import sys

from preprocessing import lock, options, pipeline, publish


def run(argv: list[str] | None = None) -> dict:
    """Parses ``argv`` (default sys.argv[1:]) and runs the job; returns stats.json's content."""
    config, pipeline_options = options.parse(argv)
    import apache_beam

    logging.getLogger(__name__).info(
        "preprocessing %s -> %s with Beam %s on Python %s", config.images, config.output_dir,
        apache_beam.__version__, platform.python_version())
    return pipeline.run(config, pipeline_options)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run(argv)
    except (options.OptionsError, pipeline.NoValidRecordsError, lock.OutputLockedError,
            lock.OutputDirError, publish.StagingError) as e:
        sys.exit(f"preprocessing.run: error: {e}")  # exit status 1, message on stderr


if __name__ == "__main__":
    main()
