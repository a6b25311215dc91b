"""The TensorBoard → Aim transforms: classify a listing, read event files, write runs.

``ConvertTensorBoard`` chains them::

    listing ─ClassifyEventFiles─▶ (run, file assignment) ─GroupByKey─▶ (run, its files)
            ─ReadRuns─▶ RunData ─WriteRuns─▶ run results;   every step's dead letters ─▶ ``skipped``

Only file paths go through the shuffle: a run's files are read, merged and written by one worker, in
one fused step, so a worker holds one run's points at a time (memory does not grow with the number of
runs) and decoded points are never pickled between stages. Runs are the unit of parallelism.
"""
from __future__ import annotations

import collections
import posixpath
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from connectors.event_files import EventFileSource
from connectors.redact import mask_uri
from transforms.classify import EventFileAssignment, classify
from transforms.events import read_event_stream
from transforms.runs import WriteRunsFn, NAMESPACE
from transforms.series import RunData, RunSpec, Series, Skip, merge_series

__all__ = ['ClassifyEventFiles', 'ReadRunFn', 'read_event_file', 'ConvertTensorBoard', 'tensorboard_run_data',
           'SKIPPED']

SKIPPED = 'skipped'


class ClassifyEventFiles(beam.DoFn):
    """A listing (all relative event-file paths) → (run, assignment) for each file that belongs to a
    run; unorganized files go to the ``skipped`` output."""

    def __init__(self, source: EventFileSource, flat: bool):
        self.source = source
        self.flat = flat

    def process(self, listing: List[str]):
        plan = classify(listing, flat=self.flat)
        for path in plan.ignored:
            yield TaggedOutput(SKIPPED, Skip(self.source.url(path), 'unorganized event file (not in a run '
                                             'directory)', 'file'))
        for assignment in plan.assignments():
            yield assignment.run, assignment


def read_event_file(source: EventFileSource, assignment: EventFileAssignment, chunk_points: int,
                    stats: collections.Counter) -> Iterator[Union[List[Series], Skip]]:
    """One event file → chunks of Series and dead letters (Skip) for what could not be read. Adds what it
    read and skipped to ``stats`` (``files_read``/``files_skipped``, records, points by kind)."""
    url = source.url(assignment.path)
    context = {'entry': assignment.context} if assignment.context is not None else {}
    file_stats: collections.Counter = collections.Counter()
    try:
        stream = source.open(assignment.path)
    except FileNotFoundError:
        stats['files_skipped'] += 1
        yield Skip(url, 'file vanished between listing and reading', 'file')
        return
    except OSError as error:
        stats['files_skipped'] += 1
        yield Skip(url, f'file cannot be opened: {error}', 'file')
        return
    try:
        with stream:
            yield from read_event_stream(stream, url, context, chunk_points, file_stats)
    except OSError as error:
        if not file_stats['records_read']:
            stats['files_skipped'] += 1
            stats.update(file_stats)
            yield Skip(url, f'file cannot be read: {error}', 'file')
            return
        yield Skip(url, f'file read failed part-way: {error}', 'file')
    if file_stats['records_read'] == 0 and not any(k.startswith('records_skipped') for k in file_stats):
        stats['files_skipped'] += 1
        yield Skip(url, 'empty event file', 'file')
    else:
        stats['files_read'] += 1
    stats.update(file_stats)


class ReadRunFn(beam.DoFn):
    """(run, its file assignments) → (RunData, dead letters of the merge) for the writer, and dead
    letters for what could not be read. A run none of whose files held a record is not written."""

    def __init__(self, source: EventFileSource, experiment: str, chunk_points: int = 100_000, progress=None):
        self.source = source
        self.experiment = experiment
        self.chunk_points = chunk_points
        self.progress = progress
        self.files_read = Metrics.counter(NAMESPACE, 'files_read')
        self.files_skipped = Metrics.counter(NAMESPACE, 'files_skipped')
        self.records_read = Metrics.counter(NAMESPACE, 'records_read')
        self.records_skipped = Metrics.counter(NAMESPACE, 'records_skipped')
        self.points_read = Metrics.counter(NAMESPACE, 'points_read')
        self.points_skipped = Metrics.counter(NAMESPACE, 'points_skipped')

    def process(self, element: Tuple[str, Iterable[EventFileAssignment]]):
        run, assignments = element
        chunks: List[List[Series]] = []
        for assignment in sorted(assignments, key=lambda a: a.path):
            stats: collections.Counter = collections.Counter()
            for item in read_event_file(self.source, assignment, self.chunk_points, stats):
                if isinstance(item, Skip):
                    yield TaggedOutput(SKIPPED, item)
                else:
                    chunks.append(item)
            self._count(stats)
            if self.progress is not None:
                self.progress.record('files')
        if chunks:
            yield tensorboard_run_data(self.source, self.experiment, run, chunks)

    def _count(self, stats: collections.Counter) -> None:
        self.files_read.inc(stats['files_read'])
        self.files_skipped.inc(stats['files_skipped'])
        self.records_read.inc(stats['records_read'])
        self.records_skipped.inc(sum(v for k, v in stats.items() if k.startswith('records_skipped')))
        self.points_read.inc(sum(v for k, v in stats.items() if k.startswith('points_read'))
                             + stats['points_skipped:unsupported'])
        self.points_skipped.inc(stats['points_skipped:unsupported'])
        for name, value in stats.items():
            if name.startswith('points_read:'):  # by kind: points_read:metric, points_read:image, ...
                Metrics.counter(NAMESPACE, name).inc(value)


def tensorboard_run_data(source: EventFileSource, experiment: str, run: str,
                         chunks: Iterable[List[Series]]) -> Tuple[RunData, List[Skip]]:
    """All chunks of one run → the run to write, and dead letters for superseded duplicate steps."""
    parts: Dict[Tuple[str, str, str], List[Series]] = collections.defaultdict(list)
    for chunk in chunks:
        for series in chunk:
            parts[series.key].append(series)
    merged, skips = [], []
    for key in sorted(parts):
        series, superseded = merge_series(parts[key])
        merged.append(series)
        if superseded:
            skips.append(Skip(source.url(run), 'duplicate step: superseded by a later event with the same '
                              'step', 'point', count=superseded, detail=f'{series.name} {key[2]}'))
    url = mask_uri(source.url(run))  # as shown and stored; also the identity: a new password, the same runs
    attributes: Dict[str, Any] = {'tensorboard_logdir': url}
    attribute_points: Dict[str, int] = {}
    for series in [s for s in merged if s.kind in ('hparams', 'hparams_config')]:  # run attributes, not sequences
        merged.remove(series)
        attributes.setdefault(series.kind, {}).update(series.values[-1])  # the last (highest step) wins
        attribute_points[series.kind] = attribute_points.get(series.kind, 0) + len(series)
    spec = RunSpec(
        identity=f'tensorboard:{url}',
        name=run,
        experiment=experiment,
        attributes=attributes,
        creation_time=min(min(s.wall_times) for s in merged) if merged else None,
        end_time=max(max(s.wall_times) for s in merged) if merged else None,
    )
    return RunData(spec, merged, attribute_points), skips


class ConvertTensorBoard(beam.PTransform):
    """A listing of event files → runs written to Aim. Outputs ``written`` (one result per run) and
    ``skipped`` (dead letters)."""

    def __init__(self, source: EventFileSource, repo: str, experiment: str, flat: bool = False,
                 chunk_points: int = 100_000, progress=None):
        super().__init__()
        self.progress = progress
        self.source = source
        self.repo = repo
        self.experiment = experiment
        self.flat = flat
        self.chunk_points = chunk_points

    def expand(self, listing: beam.PCollection) -> Dict[str, beam.PCollection]:
        classified = listing | 'ClassifyEventFiles' >> beam.ParDo(
            ClassifyEventFiles(self.source, self.flat)).with_outputs(SKIPPED, main='files')
        read = (classified.files
                | 'GroupFilesByRun' >> beam.GroupByKey()
                | 'ReadRuns' >> beam.ParDo(ReadRunFn(self.source, self.experiment, self.chunk_points, self.progress))
                .with_outputs(SKIPPED, main='runs'))
        written = read.runs | 'WriteRuns' >> beam.ParDo(WriteRunsFn(self.repo, self.progress)).with_outputs(
            SKIPPED, main='written')
        skipped = ((classified[SKIPPED], read[SKIPPED], written[SKIPPED])
                   | 'FlattenSkipped' >> beam.Flatten())
        return {'written': written.written, 'skipped': skipped}
