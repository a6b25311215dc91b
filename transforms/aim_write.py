"""The Aim destination's transform: ``WriteToAim`` writes runs (``RunData``) into an Aim repo.

    runs ─WriteRuns─▶ run results ─CollectRuns─▶ one list ─IndexRuns─▶ the repo's index updated
                         └─CountContexts─▶ the ``contexts_written`` counter
    dead letters of the writes and of the index ─▶ ``skipped``
    each step's counts (``transforms.counted``) ─▶ ``counts``

``WriteRunsFn`` is the DoFn around ``connectors.aim_sink.AimRunWriter``; ``IndexRunsFn`` the final step
(``connectors.aim_sink.index_runs``), once, after every run is written.
"""
from __future__ import annotations

import gc
import json
import os
from typing import Any, Dict, List, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from connectors.disk_guard import is_no_space, repo_full
from connectors.retry import call_with_retry
from runmodel import RunData, Skip
from transforms.counted import CountedDoFn
from transforms.counters import COUNTS, NAMESPACE, SKIPPED

__all__ = ['WriteToAim', 'WriteRunsFn', 'IndexRunsFn', 'CountContextsFn', 'in_direct_runner_worker_process']


class WriteRunsFn(CountedDoFn):
    """Runs → one result dict per run written; a run that fails is a dead letter, and so is whatever its
    source or its write could not keep."""

    def __init__(self, repo: str, progress=None):
        self.repo = repo
        self.progress = progress
        self.runs_written = Metrics.counter(NAMESPACE, 'runs_written')
        self.runs_failed = Metrics.counter(NAMESPACE, 'runs_failed')
        self.points_written = Metrics.counter(NAMESPACE, 'points_written')
        self.points_skipped = Metrics.counter(NAMESPACE, 'points_skipped')
        self._writer = None
        self._held = None
        self._kept = None  # connectors.aim_kept_records.KeptRecords, at the first run kept
        # set at the first "no space left" (connectors.disk_guard.RepoFull): every later run fails at
        # once with it, instead of each failing slowly on the full disk
        self._repo_full = None

    def setup(self):
        self._writer = self._new_writer()
        self._held = None

    def _new_writer(self):
        """The run writer: ``prepare``, ``write`` and ``discard_prepared`` (a subclass writes elsewhere)."""
        from connectors.aim_sink import AimRunWriter  # not at import: the launcher need not load Aim

        return AimRunWriter(self.repo)

    def start_bundle(self):
        super().start_bundle()
        self._held = None

    def process(self, element: Union[RunData, Tuple[RunData, List[Skip]]], window=beam.DoFn.WindowParam,
                timestamp=beam.DoFn.TimestampParam):
        """Each run is written when the next one arrives (or at the bundle's end), its containers having
        been opened meanwhile, in the background (``AimRunWriter.prepare``). Its outputs keep its own
        window and timestamp. An element is a run (``RunData``, read while it is written) or a run
        with the dead letters its source found (counted here as skipped points)."""
        self._writer.prepare(element if isinstance(element, RunData) else element[0])
        held, self._held = self._held, (element, window, timestamp)
        if held is not None:
            yield from self._write_held(held)

    def finish_bundle(self):
        held, self._held = self._held, None
        if held is not None:
            yield from self._write_held(held)
        yield from super().finish_bundle()  # after the last run: its stream's reading is counted too

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
        if self._kept is not None:
            self._kept.close()
        if in_direct_runner_worker_process():  # it exits next: see pipelines.common.exit_program
            gc.freeze()

    def _write(self, element: Union[RunData, Tuple[RunData, List[Skip]]]):
        if isinstance(element, RunData):
            data, skips = element, []
        else:
            data, skips = element
        for skip in skips:
            self.points_skipped.inc(skip.count)
            yield TaggedOutput(SKIPPED, skip)
        passed: List[Skip] = []
        if self._repo_full is not None:  # the repo's disk is full: no later run is even opened
            yield self._failed(data, self._points(data), self._repo_full)
            return
        try:
            if data.stream is not None:
                # read while written: not retried (a transient storage error is retried per read, and a
                # retry here would read and count the run twice)
                result = self._writer.write(data, passed.append)
            else:
                # a run write is idempotent, so a transient failure (a busy lock, an Aim server
                # restarting) is retried whole
                def attempt():
                    passed.clear()
                    return self._writer.write(data, passed.append)

                result = call_with_retry(attempt, resource=f'Aim repo {self.repo} run {data.spec.name}')
        except Exception as error:  # one bad run must not stop the others; it is reported
            if is_no_space(error):
                error = self._repo_full = repo_full(self.repo, error)
            yield from (TaggedOutput(SKIPPED, skip) for skip in passed)
            yield self._failed(data, self._points(data), error)
            return
        yield from (TaggedOutput(SKIPPED, skip) for skip in passed)
        if result is None:  # the source held no point: no run
            return
        self.points_skipped.inc(result.superseded)
        written = dict(result.points)
        for kind, count in data.attribute_points.items():  # written as run attributes
            written[kind] = written.get(kind, 0) + count
        self.runs_written.inc()
        self.points_written.inc(sum(written.values()))
        for kind, count in written.items():
            Metrics.counter(NAMESPACE, f'points_written:{kind}').inc(count)
        if self.progress is not None:
            self.progress.record('runs', 1, sum(written.values()))
        yield {'name': data.spec.name, 'hash': result.hash, 'points': written, 'contexts': result.contexts,
               **self._index_inputs(result)}

    def _index_inputs(self, result) -> Dict[str, Any]:
        """What the index step needs of a run written (``IndexRunsFn``): its SQLite props and meta records,
        the records kept in a file beside a local repo (``connectors.aim_kept_records``): only where they are
        travels, so that the index step's input does not grow with the runs' records."""
        inputs = {'props': result.props, 'meta_records': result.meta_records}
        if result.meta_records is not None and result.props is not None and '://' not in self.repo:
            if self._kept is None:
                from connectors.aim_kept_records import KeptRecords
                self._kept = KeptRecords(self.repo)
            try:
                inputs = {'props': result.props, 'kept': self._kept.keep(result.props, result.meta_records)}
            except OSError:  # a full disk: the records travel in memory, as they did
                pass
        return inputs

    @staticmethod
    def _points(data: RunData) -> int:
        """The points of a run that was not written: those read so far, for a run read while written."""
        if data.stream is not None:
            return data.points_seen
        return sum(len(s) for s in data.series) + sum(data.attribute_points.values())

    def _failed(self, data: RunData, points: int, error: BaseException) -> TaggedOutput:
        """The dead letter of a run not written; its points count as skipped."""
        self.runs_failed.inc()
        self.points_skipped.inc(points)
        return TaggedOutput(SKIPPED, Skip(data.origin, f'run could not be written: {type(error).__name__}: {error}',
                                          'run', count=points))


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


class IndexRunsFn(CountedDoFn):
    """All run results (one list) → their SQLite props written and the repo index updated, once, from
    one worker. On a full disk the runs stay unindexed (invisible to Aim until a re-run indexes them):
    each is a dead letter, counted as ``runs_unindexed``; the pipeline goes on to write the report. When
    another process (an ``aim up``) holds the index past the wait, the runs are written and that process
    lists them: counted as ``runs_index_deferred``, one report line, not a failure."""

    def __init__(self, repo: str):
        self.repo = repo
        self.runs_unindexed = Metrics.counter(NAMESPACE, 'runs_unindexed')
        self.runs_index_deferred = Metrics.counter(NAMESPACE, 'runs_index_deferred')

    def process(self, results: List[Dict[str, Any]]):
        from connectors.aim_kept_records import RecordFiles, discard, remove_stale
        from connectors.aim_sink import IndexBusy, index_runs

        kept = {r['hash']: r['kept'] for r in results if r.get('kept')}
        in_memory = {r['hash']: r['meta_records'] for r in results if r.get('meta_records') is not None}
        try:
            indexed = index_runs(self.repo, [r['hash'] for r in results],
                                 [r['props'] for r in results if r['props'] is not None],
                                 {**RecordFiles(kept), **in_memory} if in_memory else RecordFiles(kept))
        except IndexBusy as busy:  # the runs are written and listed by who holds the index: one report line
            discard(kept.values())
            remove_stale(self.repo)
            self.runs_index_deferred.inc(busy.runs)
            yield 0
            return
        except Exception as error:
            if not is_no_space(error):
                raise
            full = repo_full(self.repo, error)
            self.runs_unindexed.inc(len(results))
            for result in results:
                yield TaggedOutput(SKIPPED, Skip(f"{self.repo} run {result['name']}",
                                                 f'run written but not indexed (a re-run indexes it): '
                                                 f'{type(full).__name__}: {full}', 'run', count=0))
            return
        discard(kept.values())
        remove_stale(self.repo)  # a killed conversion's files: their runs were written again now
        yield indexed


class CountContextsFn(CountedDoFn):
    """Run results (``WriteRunsFn``'s output, each with its ``contexts``) → the ``contexts_written``
    counter that the report prints."""

    def __init__(self):
        self.contexts_written = Metrics.counter(NAMESPACE, 'contexts_written')

    def process(self, result):
        self.contexts_written.inc(len(result.get('contexts', ())))
        return iter(())


class WriteToAim(beam.PTransform):
    """Runs (``RunData``, or ``(RunData, dead letters)``) → written into the Aim repo ``repo`` and indexed.
    Outputs ``written`` (one result dict per run written), ``skipped`` (dead letters: runs that failed,
    what a run's source or write could not keep, runs left unindexed) and ``counts`` (what each step
    counted, its reading of the runs' streams included)."""

    def __init__(self, repo: str, progress=None):
        super().__init__()
        self.repo = repo
        self.progress = progress  # a pipelines.progress.ProgressRecorder: runs and points as they are written

    def expand(self, runs: beam.PCollection) -> Dict[str, beam.PCollection]:
        written = runs | 'WriteRuns' >> beam.ParDo(WriteRunsFn(self.repo, self.progress)).with_outputs(
            SKIPPED, COUNTS, main='written')
        contexts = written.written | 'CountContexts' >> beam.ParDo(CountContextsFn()).with_outputs(COUNTS)
        indexed = (written.written
                   | 'CollectRuns' >> beam.combiners.ToList()
                   | 'IndexRuns' >> beam.ParDo(IndexRunsFn(self.repo)).with_outputs(SKIPPED, COUNTS, main='indexed'))
        skipped = (written[SKIPPED], indexed[SKIPPED]) | 'FlattenSkipped' >> beam.Flatten()
        counts = (written[COUNTS], contexts[COUNTS], indexed[COUNTS]) | 'FlattenCounts' >> beam.Flatten()
        return {'written': written.written, 'skipped': skipped, 'counts': counts}
