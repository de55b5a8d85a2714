"""Which Beam runner executes a ``--runner=DirectRunner`` job: the FnApiRunner, chosen directly.

Since Beam 2.6x the DirectRunner first tries the Prism runner: it downloads a Go binary from
GitHub on every run that lacks one (offline: a failed download per run), and runs the Python
workers in LOOPBACK mode inside the launching process, so ``--direct_running_mode`` and
``--direct_num_workers`` have no effect there. This job's laptop story is those two flags (two
worker processes decode images on two cores), and its tests run on the FnApiRunner, which is what
the DirectRunner falls back to. So a DirectRunner job goes straight to the FnApiRunner, given the
pipeline options the same way the DirectRunner gives them (the workers read them, e.g. for GCS).
Every other runner (Dataflow, Flink, an explicit PrismRunner) is left to Beam.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


def runner_for(pipeline_options: PipelineOptions):
    """A runner instance for ``beam.Pipeline(runner=...)``, or None to let Beam pick by --runner."""
    name = pipeline_options.view_as(StandardOptions).runner or "DirectRunner"
    if name not in ("DirectRunner", "apache_beam.runners.direct.direct_runner.DirectRunner"):
        return None
    if pipeline_options.view_as(StandardOptions).streaming:
        return None  # the FnApiRunner is batch-only; the DirectRunner knows what to do
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(pipeline_options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))
