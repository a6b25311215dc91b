"""The TensorBoard → Aim transforms: classify a listing, read event files, write runs.

``ConvertTensorBoard`` chains them::

    listing ─ClassifyEventFiles─▶ file assignments ─Reshuffle─▶ ReadEventFiles ─▶ (run, chunk)
            ─GroupByKey─▶ WriteRuns ─▶ run results;   every step's dead letters ─▶ ``skipped``
"""
from __future__ import annotations

import collections
import posixpath
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from connectors.event_files import EventFileSource
from transforms.classify import EventFileAssignment, classify
from transforms.events import read_event_stream
from transforms.runs import WriteRunsFn, NAMESPACE
from transforms.series import RunData, RunSpec, Series, Skip, merge_series

__all__ = ['ClassifyEventFiles', 'ReadEventFileFn', 'ConvertTensorBoard', 'tensorboard_run_data', 'SKIPPED']

SKIPPED = 'skipped'


class ClassifyEventFiles(beam.DoFn):
    """A listing (all relative event-file paths) → one assignment per file that belongs to a run;
    unorganized files go to the ``skipped`` output."""

    def __init__(self, source: EventFileSource, flat: bool):
        self.source = source
        self.flat = flat

    def process(self, listing: List[str]):
        plan = classify(listing, flat=self.flat)
        for path in plan.ignored:
            yield TaggedOutput(SKIPPED, Skip(self.source.url(path), 'unorganized event file (not in a run '
                                             'directory)', 'file'))
        yield from plan.assignments()


class ReadEventFileFn(beam.DoFn):
    """One event file → (run, chunk of Series) elements, and dead letters for what could not be read."""

    def __init__(self, source: EventFileSource, chunk_points: int = 100_000, progress=None):
        self.source = source
        self.chunk_points = chunk_points
        self.progress = progress
        self.files_read = Metrics.counter(NAMESPACE, 'files_read')
        self.files_skipped = Metrics.counter(NAMESPACE, 'files_skipped')
        self.records_read = Metrics.counter(NAMESPACE, 'records_read')
        self.records_skipped = Metrics.counter(NAMESPACE, 'records_skipped')
        self.points_read = Metrics.counter(NAMESPACE, 'points_read')
        self.points_skipped = Metrics.counter(NAMESPACE, 'points_skipped')

    def process(self, assignment: EventFileAssignment):
        url = self.source.url(assignment.path)
        context = {'entry': assignment.context} if assignment.context is not None else {}
        stats: collections.Counter = collections.Counter()
        try:
            stream = self.source.open(assignment.path)
        except FileNotFoundError:
            self.files_skipped.inc()
            yield TaggedOutput(SKIPPED, Skip(url, 'file vanished between listing and reading', 'file'))
            return
        except OSError as error:
            self.files_skipped.inc()
            yield TaggedOutput(SKIPPED, Skip(url, f'file cannot be opened: {error}', 'file'))
            return
        try:
            with stream:
                for item in read_event_stream(stream, url, context, self.chunk_points, stats):
                    if isinstance(item, Skip):
                        yield TaggedOutput(SKIPPED, item)
                    else:
                        yield assignment.run, item
        except OSError as error:
            yield TaggedOutput(SKIPPED, Skip(url, f'file read failed part-way: {error}', 'file'))
        if stats['records_read'] == 0 and not any(k.startswith('records_skipped') for k in stats):
            self.files_skipped.inc()
            yield TaggedOutput(SKIPPED, Skip(url, 'empty event file', 'file'))
        else:
            self.files_read.inc()
        if self.progress is not None:
            self.progress.record('files')
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
    url = source.url(run)
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
                | 'SpreadFiles' >> beam.Reshuffle()
                | 'ReadEventFiles' >> beam.ParDo(ReadEventFileFn(self.source, self.chunk_points, self.progress))
                .with_outputs(SKIPPED, main='chunks'))
        source, experiment = self.source, self.experiment
        written = (read.chunks
                   | 'GroupByRun' >> beam.GroupByKey()
                   | 'BuildRuns' >> beam.Map(lambda kv: tensorboard_run_data(source, experiment, kv[0], kv[1]))
                   | 'WriteRuns' >> beam.ParDo(WriteRunsFn(self.repo, self.progress)).with_outputs(SKIPPED, main='written'))
        skipped = ((classified[SKIPPED], read[SKIPPED], written[SKIPPED])
                   | 'FlattenSkipped' >> beam.Flatten())
        return {'written': written.written, 'skipped': skipped}
