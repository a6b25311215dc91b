"""Writing runs to Aim from Beam: the DoFn around ``connectors.aim_sink`` and the final index step."""
from __future__ import annotations

import gc
import json
import os
from typing import Any, Dict, List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from connectors.retry import call_with_retry
from transforms.series import RunData, Skip

__all__ = ['WriteRunsFn', 'IndexRunsFn', 'NAMESPACE']

NAMESPACE = 'runferry'
SKIPPED = 'skipped'


class WriteRunsFn(beam.DoFn):
    """(RunData, dead letters) → one result dict per run written; a run that fails is a dead letter."""

    def __init__(self, repo: str, progress=None):
        self.repo = repo
        self.progress = progress
        self.runs_written = Metrics.counter(NAMESPACE, 'runs_written')
        self.runs_failed = Metrics.counter(NAMESPACE, 'runs_failed')
        self.points_written = Metrics.counter(NAMESPACE, 'points_written')
        self.points_skipped = Metrics.counter(NAMESPACE, 'points_skipped')
        self._writer = None
        self._held = None

    def setup(self):
        from connectors.aim_sink import AimRunWriter  # not at import: the launcher need not load Aim

        self._writer = AimRunWriter(self.repo)
        self._held = None

    def start_bundle(self):
        self._held = None

    def process(self, element: Tuple[RunData, List[Skip]], window=beam.DoFn.WindowParam,
                timestamp=beam.DoFn.TimestampParam):
        """Each run is written when the next one arrives (or at the bundle's end), its containers having
        been opened meanwhile, in the background (``AimRunWriter.prepare``). Its outputs keep its own
        window and timestamp."""
        self._writer.prepare(element[0])
        held, self._held = self._held, (element, window, timestamp)
        if held is not None:
            yield from self._write_held(held)

    def finish_bundle(self):
        held, self._held = self._held, None
        if held is not None:
            yield from self._write_held(held)

    def _write_held(self, held):
        element, window, timestamp = held
        for output in self._write(element):
            if isinstance(output, TaggedOutput):
                yield TaggedOutput(output.tag, WindowedValue(output.value, timestamp, [window]))
            else:
                yield WindowedValue(output, timestamp, [window])

    def teardown(self):
        if self._writer is not None:
            self._writer.discard_prepared()  # only after a failure is anything left prepared
        if in_direct_runner_worker_process():  # it exits next: see pipelines.common.exit_program
            gc.freeze()

    def _write(self, element: Tuple[RunData, List[Skip]]):
        data, skips = element
        for skip in skips:
            self.points_skipped.inc(skip.count)
            yield TaggedOutput(SKIPPED, skip)
        points = sum(len(s) for s in data.series) + sum(data.attribute_points.values())
        try:
            # a run write is idempotent, so a transient failure (a busy lock, an Aim server restarting)
            # is retried whole
            result = call_with_retry(self._writer.write, data, resource=f'Aim repo {self.repo} run {data.spec.name}')
            written = dict(result.points)
            for kind, count in data.attribute_points.items():  # written as run attributes
                written[kind] = written.get(kind, 0) + count
        except Exception as error:  # one bad run must not stop the others; it is reported
            self.runs_failed.inc()
            self.points_skipped.inc(points)
            yield TaggedOutput(SKIPPED, Skip(data.spec.attributes.get('tensorboard_logdir', data.spec.identity),
                                             f'run could not be written: {type(error).__name__}: {error}',
                                             'run', count=points))
            return
        self.runs_written.inc()
        self.points_written.inc(sum(written.values()))
        for kind, count in written.items():
            Metrics.counter(NAMESPACE, f'points_written:{kind}').inc(count)
        if self.progress is not None:
            self.progress.record('runs', 1, sum(written.values()))
        yield {'name': data.spec.name, 'hash': result.hash, 'points': written, 'props': result.props,
               'meta_records': result.meta_records, 'contexts': sorted({str(s.context) for s in data.series})}


def in_direct_runner_worker_process() -> bool:
    """True in a worker process the DirectRunner started (``--direct_running_mode=multi_processing``),
    which exits once its DoFns are torn down."""
    if 'CONTROL_API_SERVICE_DESCRIPTOR' not in os.environ:  # set for Beam's SDK worker processes
        return False
    try:
        options = json.loads(os.environ.get('PIPELINE_OPTIONS') or '{}')
    except ValueError:
        return False
    return isinstance(options, dict) and options.get('beam:option:direct_running_mode:v1') == 'multi_processing'


class IndexRunsFn(beam.DoFn):
    """All run results (one list) → their SQLite props written and the repo index updated, once, from
    one worker."""

    def __init__(self, repo: str):
        self.repo = repo
        self.runs_unindexed = Metrics.counter(NAMESPACE, 'runs_unindexed')

    def process(self, results: List[Dict[str, Any]]):
        from connectors.aim_sink import IndexBusy, index_runs

        try:
            yield index_runs(self.repo, [r['hash'] for r in results],
                             [r['props'] for r in results if r['props'] is not None],
                             {r['hash']: r['meta_records'] for r in results if r.get('meta_records') is not None})
        except IndexBusy as busy:  # the runs are written; the report says so, in one line
            self.runs_unindexed.inc(busy.runs)
            yield 0
