"""The TensorBoard source's transforms: classify a listing, read event files into runs.

``ReadTensorBoard`` chains them::

    listing ─ClassifyEventFiles─▶ (run, file assignment) ─GroupByKey─▶ (run, its files)
            ─ReadRuns─▶ RunData (``runs``);   dead letters ─▶ ``skipped``

Only file paths go through the shuffle. ``ReadRuns`` hands each run on as a ``RunData`` whose files are
read while a destination writes them (``EventFileRun``, ``RunData.stream``), chunk by chunk: a worker
holds one chunk of one run at a time (memory grows neither with the number of runs nor with a run's
size), and decoded points are never pickled between stages. Runs are the unit of parallelism. What the
files hold that cannot be kept is found while they are read: those dead letters come out of the
destination's ``skipped`` output.
"""
from __future__ import annotations

import collections
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from connectors.event_files import EventFileSource
from connectors.redact import mask_uri
from transforms.classify import AIM, EventFileAssignment, classify, run_name
from transforms.events import read_event_stream
from transforms.hparams import merge_run_attributes
from transforms.counters import NAMESPACE, SKIPPED
from transforms.sequence_names import hold_aim_names
from runmodel import SUPERSEDED_REASON, RunData, RunSpec, Series, Skip, merge_series

__all__ = ['ClassifyEventFiles', 'ReadRunFn', 'read_event_file', 'ReadTensorBoard', 'tensorboard_run_data',
           'data_time_span', 'SKIPPED']


class ClassifyEventFiles(beam.DoFn):
    """A listing (all relative event-file paths) → (run, assignment) for each file that belongs to a
    run; unorganized files go to the ``skipped`` output."""

    def __init__(self, source: EventFileSource, layout: str):
        self.source = source
        self.layout = layout

    def process(self, listing: List[str]):
        plan = classify(listing, self.layout)
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
        try:
            with stream:
                yield from read_event_stream(stream, url, context, chunk_points, file_stats)
        except OSError as error:
            if not file_stats['records_read']:
                stats['files_skipped'] += 1
                yield Skip(url, f'file cannot be read: {error}', 'file')
                return
            yield Skip(url, f'file read failed part-way: {error}', 'file')
        if file_stats['records_read'] == 0 and not any(k.startswith('records_skipped') for k in file_stats):
            stats['files_skipped'] += 1
            yield Skip(url, 'empty event file', 'file')
        else:
            stats['files_read'] += 1
    finally:  # counted also when the reader stops early (the writer failed): what was read, was read
        stats.update(file_stats)


class ReadCounters:
    """The reading counters of ``runferry`` (files, records, points by kind), made where a DoFn is
    constructed and incremented wherever its runs are read (by the writer, as it streams them)."""

    def __init__(self):
        self.files_read = Metrics.counter(NAMESPACE, 'files_read')
        self.files_skipped = Metrics.counter(NAMESPACE, 'files_skipped')
        self.records_read = Metrics.counter(NAMESPACE, 'records_read')
        self.records_skipped = Metrics.counter(NAMESPACE, 'records_skipped')
        self.points_read = Metrics.counter(NAMESPACE, 'points_read')
        self.points_skipped = Metrics.counter(NAMESPACE, 'points_skipped')

    def count(self, stats: collections.Counter) -> None:
        self.files_read.inc(stats['files_read'])
        self.files_skipped.inc(stats['files_skipped'])
        self.records_read.inc(stats['records_read'])
        self.records_skipped.inc(sum(v for k, v in stats.items() if k.startswith('records_skipped')))
        self.points_read.inc(sum(v for k, v in stats.items() if k.startswith('points_read'))
                             + stats['points_skipped:unsupported'])
        # ``points_skipped:unsupported``: points of no kind (read only here); any other
        # ``points_skipped:<why>``: points read of a kind (in its ``points_read:<kind>``) and not kept
        self.points_skipped.inc(sum(v for k, v in stats.items() if k.startswith('points_skipped:')))
        for name, value in stats.items():
            if name.startswith('points_read:'):  # by kind: points_read:metric, points_read:image, ...
                Metrics.counter(NAMESPACE, name).inc(value)


# kinds kept as run attributes (transforms.plugins.ATTRIBUTE_KINDS), not sequences
ATTRIBUTE_KINDS = ('hparams', 'hparams_config')


class EventFileRun:
    """One run's event files, read while the sink writes them (``RunData.stream``): yields chunks of
    series (about ``chunk_points`` points or ``chunk_bytes`` of objects each) and dead letters, file by
    file in path order, and counts what it read. Hparams are kept aside and become run attributes when
    the files are done (``run_attributes``); the run's start and end are its data's first and last wall
    time (``data_time_span``). Picklable: it holds only the source and the paths."""

    def __init__(self, source: EventFileSource, assignments: List[EventFileAssignment], chunk_points: int,
                 counters: ReadCounters, progress=None):
        self.source = source
        self.assignments = sorted(assignments, key=lambda a: a.path)
        self.chunk_points = chunk_points
        self.counters = counters
        self.progress = progress

    def __call__(self, data: RunData) -> Iterator[Union[List[Series], Skip]]:
        attribute_parts: List[Series] = []
        span: Tuple[Optional[float], Optional[float]] = (None, None)
        for assignment in self.assignments:
            stats: collections.Counter = collections.Counter()
            try:
                for item in read_event_file(self.source, assignment, self.chunk_points, stats):
                    if isinstance(item, Skip):
                        yield item
                        continue
                    data.points_seen += sum(len(s) for s in item)
                    span = _wider(span, data_time_span(item))
                    sequences, unnamed = hold_aim_names([s for s in item if s.kind not in ATTRIBUTE_KINDS],
                                                        data.origin)
                    attribute_parts.extend(s for s in item if s.kind in ATTRIBUTE_KINDS)
                    for skip in unnamed:  # a name Aim cannot hold: its points are read, not written
                        self.counters.points_skipped.inc(skip.count)
                        yield skip
                    if sequences:
                        yield sequences
            finally:
                self.counters.count(stats)
            if self.progress is not None:
                self.progress.record('files')
        attributes, points, skips = run_attributes(data.origin, attribute_parts)
        data.spec.attributes.update(attributes)
        data.attribute_points = points
        data.spec.creation_time, data.spec.end_time = span
        for skip in skips:
            self.counters.points_skipped.inc(skip.count)
            yield skip


def _wider(span: Tuple[Optional[float], Optional[float]],
           other: Tuple[Optional[float], Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    if other[0] is None:
        return span
    if span[0] is None:
        return other
    return min(span[0], other[0]), max(span[1], other[1])


def run_attributes(origin: str, parts: List[Series]) -> Tuple[Dict[str, Any], Dict[str, int], List[Skip]]:
    """A run's hparams parts → its attributes (``transforms.hparams.merge_run_attributes``: per context,
    nothing overwritten silently), the points they hold by kind, and dead letters: an event superseded
    at its step, a value a later one replaced."""
    by_key: Dict[Tuple[str, str, str], List[Series]] = collections.defaultdict(list)
    for part in parts:
        by_key[part.key].append(part)
    merged, skips = [], []
    for key in sorted(by_key):
        series, superseded = merge_series(by_key[key])
        merged.append(series)
        if superseded:
            skips.append(Skip(origin, SUPERSEDED_REASON, 'point', count=superseded, detail=f'{series.name} {key[2]}'))
    attributes, points, replaced = merge_run_attributes(merged, origin)
    return attributes, points, skips + replaced


class ReadRunFn(beam.DoFn):
    """(run, its file assignments) → the run to write (``RunData``), whose files are read while it is
    written (``EventFileRun``): a run's points never wait in memory for the writer. A run none of whose
    files holds a point is not written (``AimRunWriter.write`` returns None)."""

    def __init__(self, source: EventFileSource, experiment: str, chunk_points: int = 100_000, progress=None):
        self.source = source
        self.experiment = experiment
        self.chunk_points = chunk_points
        self.progress = progress
        self.counters = ReadCounters()

    def process(self, element: Tuple[str, Iterable[EventFileAssignment]]):
        run, assignments = element
        url = mask_uri(self.source.url(run))  # as shown and stored; also the identity: a new password, the same runs
        spec = RunSpec(identity=f'tensorboard:{url}', name=run_name(run, self.source.logdir), experiment=self.experiment,
                       attributes={'tensorboard_logdir': url}, origin=url)
        yield RunData(spec, stream=EventFileRun(self.source, list(assignments), self.chunk_points, self.counters,
                                                self.progress))


def tensorboard_run_data(source: EventFileSource, experiment: str, run: str,
                         assignments: Iterable[EventFileAssignment], chunk_points: int = 100_000) -> RunData:
    """One run as ``ReadRunFn`` makes it, outside a pipeline (tests, the benchmark)."""
    return next(iter(ReadRunFn(source, experiment, chunk_points).process((run, assignments))))


def data_time_span(series: Iterable[Series]) -> Tuple[Optional[float], Optional[float]]:
    """A run's start and end: the first and last wall time of the events that carry its data (its
    sequences' points and its hparams). Events that carry none, such as the ``file_version`` header
    each event file starts with (dated when the writer opened the file), never become points, so
    they never stretch a run; (None, None) when there is no point at all."""
    times = [t for s in series if len(s) for t in (min(s.wall_times), max(s.wall_times))]
    return (min(times), max(times)) if times else (None, None)


class ReadTensorBoard(beam.PTransform):
    """The event files of a logdir's listing → runs (``RunData``, read while written). Applied to the
    pipeline's start; outputs ``runs`` and ``skipped`` (unorganized event files; what the files hold
    that cannot be kept comes out of the destination, as they are read)."""

    def __init__(self, source: EventFileSource, listing: List[str], experiment: str, layout: str = AIM,
                 chunk_points: int = 100_000, progress=None):
        super().__init__()
        self.source = source
        self.listing = listing  # paths relative to the logdir, as EventFileSource.list_files gives them
        self.experiment = experiment
        self.layout = layout
        self.chunk_points = chunk_points
        self.progress = progress

    def expand(self, begin: beam.pvalue.PBegin) -> Dict[str, beam.PCollection]:
        classified = (begin
                      | 'ListEventFiles' >> beam.Create([self.listing])
                      | 'ClassifyEventFiles' >> beam.ParDo(ClassifyEventFiles(self.source, self.layout))
                      .with_outputs(SKIPPED, main='files'))
        runs = (classified.files
                | 'GroupFilesByRun' >> beam.GroupByKey()
                | 'ReadRuns' >> beam.ParDo(ReadRunFn(self.source, self.experiment, self.chunk_points, self.progress)))
        return {'runs': runs, 'skipped': classified[SKIPPED]}
