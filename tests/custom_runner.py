"""A runner defined outside Beam, with options of its own (as Beam's Dask runner has): loaded only by
``--runner tests.custom_runner.CustomRunner``, which is how the flag check must learn its options."""
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import DirectRunner


class CustomRunnerOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument('--custom_cluster_address', help='where the custom runner sends the job')


class CustomRunner(DirectRunner):
    pass
