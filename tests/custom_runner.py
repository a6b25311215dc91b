"""A runner defined outside Beam, with options of its own (as Beam's Dask runner has): loaded only by
``--runner tests.custom_runner.CustomRunner``, which is how the flag check must learn its options. And
``DetachedRunner``: a runner that submits and returns, as Dataflow does, without Dataflow."""
import os
import subprocess
import sys
import threading

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import DirectRunner
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState


class CustomRunnerOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument('--custom_cluster_address', help='where the custom runner sends the job')


class CustomRunner(DirectRunner):
    pass


class DetachedRunner(PipelineRunner):
    """A runner that, as Dataflow does, submits the job and returns at once while the job runs elsewhere:
    the job is the very command that launched it (``sys.argv``) run again with ``--runner=DirectRunner`` in
    a process of its own (its own session; output to the file ``RUNFERRY_DETACHED_LOG`` names, else
    none). The result's job id is that process's pid; its ``wait_until_finish`` never returns, so a
    launcher that waits for the job hangs (and its test times out)."""

    def run_pipeline(self, pipeline, options):
        argv = [('--runner=DirectRunner' if arg.startswith('--runner=') else arg) for arg in sys.argv]
        log_path = os.environ.get('RUNFERRY_DETACHED_LOG')
        with open(log_path or os.devnull, 'ab') as log:
            job = subprocess.Popen([sys.executable, *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True)
        return NeverFinished(str(job.pid))


class NeverFinished(PipelineResult):
    """A job that is running and, as far as the launcher can tell, never ends."""

    def __init__(self, job_id: str):
        super().__init__(PipelineState.RUNNING)
        self._job_id = job_id

    def job_id(self) -> str:
        return self._job_id

    def wait_until_finish(self, duration=None):
        threading.Event().wait()
