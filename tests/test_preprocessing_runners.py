"""preprocessing.runners: a DirectRunner job runs on the FnApiRunner with its options."""

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from preprocessing import runners


def test_direct_runner_jobs_go_to_the_fn_api_runner_and_other_runners_to_beam():
    assert isinstance(runners.runner_for(PipelineOptions(["--runner=DirectRunner"])), FnApiRunner)
    assert isinstance(runners.runner_for(PipelineOptions([])), FnApiRunner)  # Beam's default
    for argv in (["--runner=DataflowRunner"], ["--runner=PrismRunner"],
                 ["--runner=DirectRunner", "--streaming"]):
        assert runners.runner_for(PipelineOptions(argv)) is None, argv


def test_direct_running_mode_is_honoured():
    # The runner built here takes the options: its workers are other processes.
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                               "--direct_num_workers=2"])
    here = os.getpid()
    with beam.Pipeline(runner=runners.runner_for(options), options=options) as p:
        out = (p | beam.Create(range(4)) | beam.Reshuffle()
               | beam.Map(lambda x, here: (os.getpid() != here, x * x), here))
        assert_that(out, equal_to([(True, 0), (True, 1), (True, 4), (True, 9)]))
