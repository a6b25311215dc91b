"""W&B runs (``.wandb`` files) → ``RunData``: each run's files read while the sink writes them.

``ReadWandb`` chains it::

    the plan (run id → its .wandb files) ─ReadRuns─▶ RunData (streamed: ``WandbRun``)

Its ``skipped`` output is empty: a W&B run's dead letters are found while it is read (by the writer).

A run is named by its W&B run id (``run-<id>.wandb``), so a resumed run's several files, in several
run directories, are one run (identity ``wandb:<id>``), read in the order they were written. Its
records map to Aim (README, "W&B runs into Aim"):

* the ``run`` record: name (display name, else the id), experiment (the project), tags, notes as the
  description, attributes ``wandb_run_id``/``wandb_project``/``wandb_entity``/``wandb_group``/
  ``wandb_job_type``, the config as ``hparams`` (with later ``config`` records' updates), the start as
  the creation time; ``summary`` records fold into the final summary (``wandb_summary``); ``exit``
  gives ``wandb_state`` (``finished`` / ``failed``, with ``wandb_exit_code``; none: ``unfinished``);
  ``environment`` records are kept as ``wandb_environment``;
* ``history`` rows: each value at its row's ``_step`` with the row's ``_timestamp`` as wall time, nested
  keys flattened ``a/b``: numbers → metrics, strings → text, W&B media (``image-file``,
  ``images/separated``, ``histogram``, ``table-file``, ``audio-file``) → images (the bytes of the files
  under the run directory's ``files/``), distributions, text (the table as CSV), audio. Anything else
  is a dead letter naming the key and its type. ``_runtime`` (seconds since the start: the wall time
  less the creation time) is not a sequence;
* ``stats`` records (system metrics) → metrics named by W&B's key (``cpu``, ``gpu.0.gpu``...) in the
  context ``{"system": "wandb"}``, one step per sample;
* console output (``output_raw`` / ``output``) → Aim's terminal logs (the ``logs`` sequence of
  ``aim.log_line``s in the empty context that Aim's own capture writes and its UI's Logs tab shows):
  stdout and stderr as one terminal, one point per line stepped 0, 1, 2, ... over the run's files, the
  text after a line's last ``\\r`` (``transforms.wandb_console``); each line keeps its streams beside
  its text (``stream``); the texts a ``\\r`` overwrote are counted as read and skipped;
* W&B's bookkeeping records (``header``, ``telemetry``, ``files``, ``metric``, ...) carry no run data
  and are read, not converted; other artifacts, alerts and TensorBoard records are dead letters.

Offline, W&B restarts ``_step`` at 0 when a run is resumed: a resumed file whose first step is not past
the run's last step so far has its steps shifted to follow it (``wandb_step_offsets`` records by how
much, per file), so nothing is overwritten.
"""
from __future__ import annotations

import collections
import posixpath
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics

from connectors.event_files import EventFileSource
from connectors.redact import mask_uri
from connectors.wandb_file import Problem, iter_records
from transforms.counted import CountedDoFn
from transforms.counters import COUNTS, NAMESPACE
from transforms.sequence_names import hold_aim_names
from transforms.tensorboard import ReadCounters
from transforms.wandb_console import OVERWRITTEN_REASON, ConsoleLine, ConsoleLines, emulated_lines
from transforms.wandb_plan import WandbPlan, is_wandb_file, plan_wandb_runs
from transforms.wandb_values import (AUDIO, IMAGE, Unconverted, convert_value, history_values, item_path,
                                     json_value, merge_dict, remove_path, set_path, unflatten)
from runmodel import LOG_LINE, METRIC, TERMINAL_LOGS, RunData, RunSpec, Series, Skip

__all__ = ['WandbPlan', 'plan_wandb_runs', 'is_wandb_file', 'WandbRun', 'ReadWandbRunFn', 'ReadWandb',
           'wandb_run_data', 'read_run_head', 'SYSTEM_CONTEXT', 'DEFAULT_EXPERIMENT']

SYSTEM_CONTEXT = {'system': 'wandb'}
DEFAULT_EXPERIMENT = 'default'  # a run whose run record is lost has no project
# history keys that are the row's axes, not values
_STEP, _TIMESTAMP, _RUNTIME = '_step', '_timestamp', '_runtime'
# records that carry W&B's bookkeeping, not run data: read and counted, not converted
_BOOKKEEPING = frozenset({'header', 'footer', 'final', 'telemetry', 'files', 'metric', 'request', 'preempting',
                          'noop_link_artifact', 'use_artifact'})
# an artifact W&B makes itself for each logged table (its content is converted from the history row)
_TABLE_ARTIFACT = 'run_table'
CHUNK_BYTES = 64 << 20


# ------------------------------------------------------------------------------------------ reading

class _RunState:
    """What a run's records say about the run, folded over its files in order."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.name: Optional[str] = None
        self.project: Optional[str] = None
        self.entity: Optional[str] = None
        self.group: Optional[str] = None
        self.job_type: Optional[str] = None
        self.notes: Optional[str] = None
        self.tags: List[str] = []
        self.config: Dict[str, Any] = {}
        self.summary_updates: Dict[Tuple[str, ...], Optional[str]] = {}  # path → value_json (None: removed)
        self.summary_ancestors: set = set()
        self.environment: Dict[str, Any] = {}
        self.start: Optional[float] = None
        self.last_time: Optional[float] = None
        self.exit_code: Optional[int] = None
        self.runtime: Optional[float] = None  # seconds, from the exit record
        self.step_offsets: Dict[str, int] = {}

    def saw_time(self, wall_time: float) -> None:
        if self.last_time is None or wall_time > self.last_time:
            self.last_time = wall_time

    def run_record(self, run) -> None:
        """A run record begins each file: the run (re)starts, and only a later exit record ends it."""
        self.exit_code = self.runtime = None
        self.name = run.display_name or self.name
        self.project = run.project or self.project
        self.entity = run.entity or self.entity
        self.group = run.run_group or self.group
        self.job_type = run.job_type or self.job_type
        self.notes = run.notes or self.notes
        if len(run.tags):
            self.tags = list(run.tags)
        self.config_record(run.config)
        if run.HasField('start_time'):
            start = run.start_time.seconds + run.start_time.nanos / 1e9
            self.start = start if self.start is None else min(self.start, start)

    def config_record(self, config) -> None:
        self.config.update(unflatten(config.update))
        for item in config.remove:
            remove_path(self.config, item_path(item))

    def summary_record(self, summary) -> None:
        """Summary updates come with every logged row: kept as W&B's JSON text, by path (one set above a
        path replaces it), and decoded once, into the final summary, at the end (``final_summary``)."""
        updates = self.summary_updates
        for item in summary.update:
            path = self._summary_path(item)
            updates[path] = item.value_json
        for item in summary.remove:
            updates[self._summary_path(item)] = None

    def _summary_path(self, item) -> Tuple[str, ...]:
        """The item's path, with the paths below it (replaced by it) dropped; the first time a path
        deeper than one key is seen, its ancestors are noted, so that only they pay for the search."""
        path = item_path(item)
        if path in self.summary_ancestors:
            for below in [p for p in self.summary_updates if len(p) > len(path) and p[:len(path)] == path]:
                del self.summary_updates[below]
        elif len(path) > 1 and path not in self.summary_updates:
            self.summary_ancestors.update(path[:k] for k in range(1, len(path)))
        return path

    def final_summary(self) -> Dict[str, Any]:
        summary: Dict[str, Any] = {}
        for path, text in self.summary_updates.items():
            if text is None:
                remove_path(summary, path)
            else:
                set_path(summary, path, json_value(text))
        return summary

    def fill(self, spec: RunSpec, origin: str) -> None:
        """The run's spec and attributes from what its records said."""
        spec.name = self.name or self.run_id
        spec.experiment = self.project or DEFAULT_EXPERIMENT
        spec.description = self.notes
        spec.tags = list(self.tags)
        spec.creation_time = self.start if self.start is not None else spec.creation_time
        # the last record's time; never before the start (a script may log _timestamp values of its own)
        ends = [t for t in (self.last_time, self.start) if t is not None]
        if self.start is not None and self.runtime is not None:
            ends.append(self.start + self.runtime)
        spec.end_time = max(ends) if ends else None
        attributes = {'wandb_run_id': self.run_id, 'wandb_files': origin,
                      'wandb_state': ('unfinished' if self.exit_code is None
                                      else 'finished' if self.exit_code == 0 else 'failed')}
        for key, value in (('wandb_project', self.project), ('wandb_entity', self.entity),
                           ('wandb_group', self.group), ('wandb_job_type', self.job_type),
                           ('wandb_exit_code', self.exit_code)):
            if value is not None:
                attributes[key] = value
        if self.config:
            attributes['hparams'] = self.config
        summary = self.final_summary()
        if summary:
            attributes['wandb_summary'] = summary
        if self.environment:
            attributes['wandb_environment'] = self.environment
        if self.step_offsets:
            attributes['wandb_step_offsets'] = dict(self.step_offsets)
        spec.attributes.update(attributes)



def _seconds(timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9


class _FileReader:
    """One ``.wandb`` file of a run → points into ``columns`` (shared by the run's files), dead letters
    out, the run's state updated as records come."""

    def __init__(self, run: 'WandbRun', state: _RunState, path: str, stats: collections.Counter):
        self.run = run
        self.state = state
        self.source = run.source
        self.url = run.source.url(path)
        self.files_dir = posixpath.join(posixpath.dirname(path), 'files')
        self.stats = stats
        self.unconverted: Dict[str, int] = collections.Counter()
        self.console = ConsoleLines()  # a file is one process's terminal
        self.overwritten = 0
        self.emulated_last: Dict[str, int] = {}  # stream -> step of its last line from W&B's emulator
        self.step_offset: Optional[int] = None  # decided at the file's first history row

    def read_media(self, relative: str) -> bytes:
        path = posixpath.normpath(posixpath.join(self.files_dir, relative))
        if not path.startswith(self.files_dir + '/'):
            raise Unconverted(f'media path {relative!r} outside the run directory')
        try:
            with self.source.open(path) as stream:
                return stream.read()
        except FileNotFoundError:
            raise Unconverted(f'media file {self.source.url(path)} is missing') from None
        except OSError as error:
            raise Unconverted(f'media file {self.source.url(path)} cannot be read: {error}') from None

    def skip(self, reason: str, count: int = 1) -> None:
        self.unconverted[reason] += count

    def record(self, offset: int, record) -> None:
        which = record.WhichOneof('record_type')
        handler = getattr(self, f'_on_{which}', None)
        if handler is not None:
            handler(offset, getattr(record, which))
        elif which in _BOOKKEEPING:
            self.stats['records_bookkeeping'] += 1
        else:
            self.skip(f'{which or "empty"} record not converted')

    def _on_run(self, offset: int, run) -> None:
        self.state.run_record(run)

    def _on_config(self, offset: int, config) -> None:
        self.state.config_record(config)

    def _on_summary(self, offset: int, summary) -> None:
        self.state.summary_record(summary)

    def _on_exit(self, offset: int, exit_record) -> None:
        self.state.exit_code = exit_record.exit_code
        if exit_record.runtime:
            self.state.runtime = float(exit_record.runtime)

    def _on_environment(self, offset: int, environment) -> None:
        from google.protobuf import json_format

        found = json_format.MessageToDict(environment, preserving_proto_field_name=True)
        found.pop('writer_id', None)
        merge_dict(self.state.environment, found)

    def _on_artifact(self, offset: int, artifact) -> None:
        if artifact.type != _TABLE_ARTIFACT:
            self.skip(f'artifact {artifact.name!r} of type {artifact.type!r} not converted')
        else:
            self.stats['records_bookkeeping'] += 1

    def _on_history(self, offset: int, history) -> None:
        row = unflatten(history.item)
        step = row.pop(_STEP, None)
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            step = history.step.num
        wall_time = row.pop(_TIMESTAMP, None)
        row.pop(_RUNTIME, None)
        if not isinstance(wall_time, (int, float)):
            wall_time = self.state.last_time or self.state.start or 0.0
        step = int(step)
        if self.step_offset is None:  # W&B restarts _step at 0 when a run is resumed offline
            after = self.run.last_step + 1
            self.step_offset = after - step if step < after else 0
            if self.step_offset:
                self.state.step_offsets[self.url] = self.step_offset
        step += self.step_offset
        self.run.last_step = max(self.run.last_step, step)
        self.state.saw_time(wall_time)
        for name, value in history_values(row):
            try:
                kind, payload = convert_value(value, self.read_media)
            except Unconverted as why:
                self.skip(f'history key {name!r}: {why}')
                continue
            except (KeyError, TypeError, ValueError) as error:  # a media object missing a field
                self.skip(f'history key {name!r}: malformed {type(value).__name__} ({type(error).__name__}: {error})')
                continue
            self.run.append(kind, name, {}, step, wall_time, payload, self.url, offset)

    def _on_stats(self, offset: int, stats) -> None:
        wall_time = _seconds(stats.timestamp)
        self.state.saw_time(wall_time)
        step = self.run.next_index(('stats',))
        for item in stats.item:
            try:
                value = json_value(item.value_json)
            except ValueError:
                value = None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.run.append(METRIC, item.key, SYSTEM_CONTEXT, step, wall_time, float(value), self.url, offset,
                                'system')
            else:
                self.skip(f'system metric {item.key!r}: {type(value).__name__} value')

    def _on_output_raw(self, offset: int, output) -> None:
        stream = 'stdout' if output.output_type == output.STDOUT else 'stderr'
        wall_time = _seconds(output.timestamp)
        for line in self.console.add(stream, output.line, wall_time, self.url, offset):
            self._log_line(line)
        self.state.saw_time(wall_time)

    def _on_output(self, offset: int, output) -> None:
        """Lines of W&B's terminal emulator; one that rewrites its stream's last line is written at that
        line's step again (the earlier state is superseded there, and counted so by the writer)."""
        stream = 'stdout' if output.output_type == output.STDOUT else 'stderr'
        wall_time = _seconds(output.timestamp)
        for rewrite, text in emulated_lines(output.line):
            step = self.emulated_last.get(stream) if rewrite else None
            if step is None:
                step = self.emulated_last[stream] = self.run.next_index((TERMINAL_LOGS,))
            self.run.append(LOG_LINE, TERMINAL_LOGS, {}, step, wall_time, {'text': text, 'stream': stream},
                            self.url, offset)
        self.state.saw_time(wall_time)

    def end_console(self) -> None:
        """The file's last line, if no newline ended it (the next file is another process's terminal)."""
        line = self.console.end()
        if line is not None:
            self._log_line(line)

    def _log_line(self, line: ConsoleLine) -> None:
        self.run.append(LOG_LINE, TERMINAL_LOGS, {}, self.run.next_index((TERMINAL_LOGS,)), line.wall_time,
                        {'text': line.text, 'stream': line.stream}, line.source, line.offset)
        if line.overwritten:  # read as states of the line, not written: log_line points read and skipped
            self.overwritten += line.overwritten
            self.stats[f'points_read:{LOG_LINE}'] += line.overwritten
            self.stats['points_skipped:overwritten'] += line.overwritten

    def dead_letters(self) -> Iterator[Skip]:
        for reason, count in sorted(self.unconverted.items()):
            self.stats['points_skipped:unsupported'] += count
            yield Skip(self.url, reason, 'point', count=count)
        self.unconverted.clear()
        if self.overwritten:
            yield Skip(self.url, OVERWRITTEN_REASON, 'point', count=self.overwritten,
                       detail=f'{LOG_LINE} {TERMINAL_LOGS!r}')
            self.overwritten = 0


class WandbRun:
    """One W&B run's ``.wandb`` files, read while the sink writes them (``RunData.stream``): yields
    chunks of series (about ``chunk_points`` points or ``CHUNK_BYTES`` of media each) and dead letters,
    file by file in the order they were written, and completes the run's spec when they are done.
    Picklable: it holds only the source and the paths."""

    def __init__(self, source: EventFileSource, run_id: str, paths: List[str], chunk_points: int,
                 counters: ReadCounters, progress=None):
        self.source = source
        self.run_id = run_id
        self.paths = list(paths)
        self.chunk_points = chunk_points
        self.counters = counters
        self.progress = progress
        self._reset()

    def _reset(self) -> None:
        self.columns: Dict[Tuple[str, str, str], Series] = {}
        self.pending = 0
        self.pending_bytes = 0
        self.last_step = -1
        self.indexes: Dict[tuple, int] = collections.defaultdict(int)

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in ('columns', 'pending', 'pending_bytes', 'last_step', 'indexes'):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    # -- what the file readers call
    def next_index(self, key: tuple) -> int:
        index = self.indexes[key]
        self.indexes[key] = index + 1
        return index

    def append(self, kind: str, name: str, context: Dict[str, Any], step: int, wall_time: float, payload: Any,
               source: str, offset: int, context_id: str = '') -> None:
        """One point; ``context_id`` names ``context`` among the run's few (no JSON made per point)."""
        key = (kind, name, context_id, source)
        series = self.columns.get(key)
        if series is None:
            series = self.columns[key] = Series(kind, name, dict(context), source=source)
        series.append(step, wall_time, payload, offset)
        self.pending += 1
        if kind in (IMAGE, AUDIO):
            self.pending_bytes += sum(len(sample['data']) for sample in payload)
        elif kind == LOG_LINE:
            self.pending_bytes += len(payload['text'])
        elif isinstance(payload, str):
            self.pending_bytes += len(payload)

    def _take_chunk(self, stats: collections.Counter) -> List[Series]:
        chunk = list(self.columns.values())
        self.columns = {}
        for part in chunk:
            stats[f'points_read:{part.kind}'] += len(part)
        self.pending = self.pending_bytes = 0
        return chunk

    # -- the stream
    def __call__(self, data: RunData) -> Iterator[Union[List[Series], Skip]]:
        self._reset()
        state = _RunState(self.run_id)
        for path in self.paths:
            stats: collections.Counter = collections.Counter()
            try:
                yield from self._read_file(data, state, path, stats)
            finally:
                self.counters.count(stats)
            if self.progress is not None:
                self.progress.record('files')
        stats = collections.Counter()
        if self.columns:
            yield from self._hand_over(data, self._take_chunk(stats))
        self.counters.count(stats)
        state.fill(data.spec, data.origin)
        if not data.points_seen and state.start is not None:  # the sink creates no run without a point
            yield Skip(data.origin, 'run holds no point (no history row, system metric or console line): not '
                                    'created, its config and summary not written', 'run', count=0)

    def _hand_over(self, data: RunData, chunk: List[Series]) -> Iterator[Union[List[Series], Skip]]:
        data.points_seen += sum(len(s) for s in chunk)
        sequences, unnamed = hold_aim_names(chunk, data.origin)
        for skip in unnamed:
            self.counters.points_skipped.inc(skip.count)
            yield skip
        if sequences:
            yield sequences

    def _read_file(self, data: RunData, state: _RunState, path: str, stats: collections.Counter
                   ) -> Iterator[Union[List[Series], Skip]]:
        url = self.source.url(path)
        try:
            stream = self.source.open(path)
        except FileNotFoundError:
            stats['files_skipped'] += 1
            yield Skip(url, 'file vanished between listing and reading', 'file')
            return
        except OSError as error:
            stats['files_skipped'] += 1
            yield Skip(url, f'file cannot be opened: {error}', 'file')
            return
        reader = _FileReader(self, state, path, stats)
        records = 0
        try:
            with stream:
                for item in iter_records(stream):
                    if item.__class__ is Problem:
                        stats[f'records_skipped:{item.kind}'] += 1
                        yield Skip(url, item.reason, 'record', offset=item.offset)
                        continue
                    records += 1
                    reader.record(*item)
                    if self.pending >= self.chunk_points or self.pending_bytes >= CHUNK_BYTES:
                        yield from self._hand_over(data, self._take_chunk(stats))
        except OSError as error:
            yield Skip(url, f'file read failed part-way: {error}' if records else f'file cannot be read: {error}',
                       'file')
        finally:
            stats['records_read'] += records
        reader.end_console()
        yield from reader.dead_letters()
        if records or any(k.startswith('records_skipped') for k in stats):
            stats['files_read'] += 1
        else:
            stats['files_skipped'] += 1
            yield Skip(url, 'empty .wandb file', 'file')


_HEAD_RECORDS = 64  # W&B writes the run record second, after the header


def read_run_head(source: EventFileSource, path: str) -> Optional[Any]:
    """The ``run`` record among the first records of a ``.wandb`` file (its project and start), or None."""
    with source.open(path) as stream:
        for count, item in enumerate(iter_records(stream)):
            if count >= _HEAD_RECORDS:
                break
            if item.__class__ is not Problem and item[1].WhichOneof('record_type') == 'run':
                return item[1].run
    return None


class ReadWandbRunFn(CountedDoFn):
    """(run id, its files) → the run to write (``RunData``), read while it is written (``WandbRun``).
    With ``projects``, a run of another project is left out (counted as ``runs_filtered``)."""

    def __init__(self, source: EventFileSource, chunk_points: int = 100_000, projects: Optional[List[str]] = None,
                 progress=None):
        self.source = source
        self.chunk_points = chunk_points
        self.projects = list(projects) if projects else None
        self.progress = progress
        self.counters = ReadCounters()
        self.runs_filtered = Metrics.counter(NAMESPACE, 'runs_filtered')

    def _head(self, path: str) -> Optional[Any]:
        try:
            return read_run_head(self.source, path)
        except OSError:
            return None  # the stream reports it when it reads the file

    def process(self, element: Tuple[str, List[str]]):
        run_id, paths = element
        if len(paths) > 1 or self.projects is not None:
            heads = [self._head(path) for path in paths]
            if self.projects is not None:
                project = next((head.project for head in heads if head is not None and head.project), None)
                if project not in self.projects:
                    self.runs_filtered.inc()
                    if self.progress is not None:
                        self.progress.record('files', len(paths))
                        self.progress.record('runs')
                    return
            paths = _by_start_time(paths, heads)
        origin = ' '.join(mask_uri(self.source.url(path)) for path in paths)
        spec = RunSpec(identity=f'wandb:{run_id}', name=run_id, experiment=DEFAULT_EXPERIMENT, origin=origin)
        yield RunData(spec, stream=WandbRun(self.source, run_id, paths, self.chunk_points, self.counters,
                                            self.progress))


def _by_start_time(paths: List[str], heads: List[Optional[Any]]) -> List[str]:
    """A resumed run's files in the order their runs started (each file's run record); if a file's run
    record cannot be read, all keep the plan's order (their directories' times)."""
    starts = [_seconds(head.start_time) if head is not None and head.HasField('start_time') else None
              for head in heads]
    if None in starts:
        return list(paths)
    return [path for _, _, path in sorted(zip(starts, range(len(paths)), paths))]


def wandb_run_data(source: EventFileSource, run_id: str, paths: List[str], chunk_points: int = 100_000) -> RunData:
    """One run as ``ReadWandbRunFn`` makes it, outside a pipeline (tests, the benchmark)."""
    return next(iter(ReadWandbRunFn(source, chunk_points).process((run_id, paths))))


class ReadWandb(beam.PTransform):
    """PBegin → ``{'runs': RunData, 'skipped': Skip}`` for the runs of a plan (``plan_wandb_runs``)."""

    def __init__(self, source: EventFileSource, plan: WandbPlan, projects: Optional[List[str]] = None,
                 chunk_points: int = 100_000, progress=None):
        super().__init__()
        self.source = source
        self.plan = plan
        self.projects = projects
        self.chunk_points = chunk_points
        self.progress = progress

    def expand(self, begin: beam.pvalue.PBegin) -> Dict[str, beam.PCollection]:
        runs = (begin
                | 'ListRuns' >> beam.Create(sorted(self.plan.runs.items()))
                | 'ReadRuns' >> beam.ParDo(ReadWandbRunFn(self.source, self.chunk_points, self.projects,
                                                          self.progress)).with_outputs(COUNTS, main='runs'))
        skipped = begin | 'NoDeadLettersBeforeReading' >> beam.Create([])
        return {'runs': runs.runs, 'skipped': skipped, 'counts': runs[COUNTS]}
