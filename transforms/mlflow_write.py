"""Writing runs into an MLflow tracking store from Beam: ``WriteToMlflow`` around ``connectors.mlflow_sink``.

An MLflow run is created with its start time, which for a run read while written (event files) is known
only once its files are read; so a run is read whole first (``read_whole_run``: its series merged, one per
sequence, superseded points reported), then written. Its memory grows with the run, as for an Aim server.
The write is idempotent (the run is found again by its source tag and only missing points are added), so
a transient failure (a server that refuses or drops connections, a busy database) retries it whole.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from connectors.retry import call_with_retry
from connectors.redact import mask_uri
from runmodel import RunData, Skip, read_whole
from transforms.counted import CountedDoFn
from transforms.counters import COUNTS, NAMESPACE, SKIPPED

__all__ = ['WriteToMlflow', 'WriteMlflowRunsFn', 'read_whole_run']


read_whole_run = read_whole  # the name this module has exported


class WriteMlflowRunsFn(CountedDoFn):
    """Runs → one result dict per run written; a run that fails is a dead letter (its points skipped), and
    so is whatever its source or MLflow could not keep."""

    def __init__(self, tracking_uri: str, artifact_location: Optional[str] = None, progress=None):
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.progress = progress
        self.runs_written = Metrics.counter(NAMESPACE, 'runs_written')
        self.runs_failed = Metrics.counter(NAMESPACE, 'runs_failed')
        self.points_written = Metrics.counter(NAMESPACE, 'points_written')
        self.points_skipped = Metrics.counter(NAMESPACE, 'points_skipped')
        self.points_present = Metrics.counter(NAMESPACE, 'points_present')
        self.keys_renamed = Metrics.counter(NAMESPACE, 'keys_renamed')
        self.params_moved = Metrics.counter(NAMESPACE, 'params_moved')
        self._writer = None

    def setup(self):
        from connectors.mlflow_sink import MlflowRunWriter  # not at import: the launcher need not load MLflow

        self._writer = MlflowRunWriter(self.tracking_uri, self.artifact_location)

    def process(self, element):
        data, skips = (element, []) if isinstance(element, RunData) else element
        for skip in skips:
            self.points_skipped.inc(skip.count)
            yield TaggedOutput(SKIPPED, skip)
        read: List[Skip] = []
        try:
            whole, superseded = read_whole_run(data, read.append)
        except Exception as error:  # a run whose reading failed is a dead letter; the others go on
            yield from self._skipped(read)
            yield self._failed(data, data.points_seen, error)
            return
        yield from self._skipped(read)
        if whole is None:
            return
        self.points_skipped.inc(superseded)
        passed: List[Skip] = []

        def attempt():
            passed.clear()
            return self._writer.write(whole, passed.append)

        try:
            result = call_with_retry(attempt, resource=f'MLflow {mask_uri(self.tracking_uri)} run {whole.spec.name}')
        except Exception as error:
            yield from self._skipped(passed)
            yield self._failed(data, sum(len(s) for s in whole.series) + sum(whole.attribute_points.values()), error)
            return
        for skip in passed:  # what MLflow refused: counted here (what reading skipped, the source counted)
            self.points_skipped.inc(skip.count)
        yield from self._skipped(passed)
        written = sum(result.points.values())
        self.runs_written.inc()
        self.points_written.inc(written)
        self.points_present.inc(result.present)
        self.keys_renamed.inc(len(result.renamed))
        self.params_moved.inc(result.params_moved)
        for kind, count in result.points.items():
            Metrics.counter(NAMESPACE, f'points_written:{kind}').inc(count)
        if self.progress is not None:
            self.progress.record('runs', 1, written)  # held from the source: sent now or already there
        yield {'name': whole.spec.name, 'run_id': result.run_id, 'created': result.created, 'points': result.points,
               'present': result.present, 'renamed': result.renamed}

    @staticmethod
    def _skipped(skips: List[Skip]):
        for skip in skips:
            yield TaggedOutput(SKIPPED, skip)

    def _failed(self, data: RunData, points: int, error: BaseException) -> TaggedOutput:
        self.runs_failed.inc()
        self.points_skipped.inc(points)
        return TaggedOutput(SKIPPED, Skip(data.origin, f'run could not be written: {type(error).__name__}: {error}',
                                          'run', count=points))


class WriteToMlflow(beam.PTransform):
    """PCollection[RunData] → ``{'written': one result dict per run, 'skipped': dead letters, 'counts': what
    the write counted (``transforms.counted``)}``."""

    def __init__(self, tracking_uri: str, artifact_location: Optional[str] = None, progress=None):
        super().__init__()
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.progress = progress

    def expand(self, runs: beam.PCollection) -> Dict[str, beam.PCollection]:
        written = runs | 'WriteMlflowRuns' >> beam.ParDo(
            WriteMlflowRunsFn(self.tracking_uri, self.artifact_location, self.progress)).with_outputs(
            SKIPPED, COUNTS, main='written')
        return {'written': written.written, 'skipped': written[SKIPPED], 'counts': written[COUNTS]}
