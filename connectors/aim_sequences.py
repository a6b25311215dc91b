"""A run's sequences written into Aim chunk by chunk, so that memory is bounded by a chunk, not a run.

A source hands a run over as chunks of ``Series`` (``runmodel``): one chunk holds up to some
hundred thousand points of any of the run's sequences, and one sequence may continue over many chunks
(a long pretraining log), or a chunk may hold thousands of one-point sequences (many tags). For each run,
a ``RunSequences`` writes every chunk as it comes and keeps, per sequence, only what Aim's metadata needs
(first and last point, min, max, counts). When the run ends, ``finish`` writes each sequence's metadata
(what ``RunTracker._track`` leaves after its last call), the same records whatever the chunking.

The first time a write touches a sequence, its old points are deleted: a run is rewritten whole from
its source, so a re-run adds new points and never duplicates one. At a step that repeats (two events of
a tag at one step, or files that overlap), the later point in source order wins, as in TensorBoard, and
the earlier one is counted as superseded: within a chunk by the steps themselves, across chunks by
looking the step up in the sequence as written so far (only for steps not above the highest step seen,
so an in-order log costs nothing). A sequence with superseded points has its min and max recomputed
from what was written.

Local repos get Aim's byte layout from ``connectors.aim_storage`` in one write batch per chunk; other
trees (an ``aim://`` server's ``ProxyTree``) take ``TreeView.set``, one sequence at a time, which only
works for a sequence given whole (the caller merges a remote run first).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from aim.sdk.sequences.sequence_type_map import SEQUENCE_TYPE_MAP
from aim.sdk.utils import get_object_typename
from aim.storage import encoding as _encoding
from aim.storage.context import Context
from aim.storage.hashing import hash_auto
from aim.storage.prefixview import PrefixView
from aim.storage.rockscontainer import RocksContainer

from connectors import aim_storage as storage
from connectors.aim_objects import OBJECT_CONVERTERS
from runmodel import METRIC, SUPERSEDED_REASON, Series, Skip, context_key

__all__ = ['RunSequences']


@dataclasses.dataclass
class _Sequence:
    """What a sequence's metadata needs, carried from chunk to chunk."""
    kind: str
    name: str
    context: Dict[str, Any]
    ctx_id: int
    prefix: Optional[bytes]  # its encoded path in a local seqs container; None on other trees
    points: int = 0
    superseded: int = 0
    first_step: int = 0
    first: Any = None
    last_step: int = 0
    last: Any = None
    low: float = np.inf  # min and max of the values that are not NaN (metrics)
    high: float = -np.inf
    any_number: bool = False
    as_lists: bool = False  # objects: some step holds several (then every step is a list)
    singles_written: bool = False  # objects written as singles before a list came
    record_max_length: int = 0


class RunSequences:
    """Writes one run's chunks of series into an open run (``connectors.aim_local_run.LocalRun``, or
    ``aim.Run``'s ``BasicRun`` on ``aim://`` repos).

    ``write(chunk)`` per chunk, then ``finish()`` once: it writes the metadata and returns the points
    written by kind. ``on_skip`` receives a dead letter per sequence with superseded points; ``origin``
    names the run in them."""

    def __init__(self, run, origin: str, on_skip: Callable[[Skip], None]):
        self.run = run
        # a seqs container this write created holds no old points: sequences go in without range deletes
        # (``connectors.aim_local_run.LocalRun.fresh_seqs``; see the note there on what range tombstones cost)
        self._fresh = bool(getattr(run, 'fresh_seqs', False))
        self.origin = origin
        self.on_skip = on_skip
        self._sequences: Dict[Tuple[str, str, str], _Sequence] = {}
        self._context_ids: Dict[str, int] = {}  # a context's entry is written once per run
        self._batch: Optional[storage.RecordBatch] = None
        self._bases: Dict[int, Any] = {}  # sequence version -> its tree's prefix (False: not local)
        self.first_time: Optional[float] = None
        self.last_time: Optional[float] = None

    @property
    def points(self) -> int:
        """Points written so far, superseded ones included."""
        return sum(s.points for s in self._sequences.values())

    @property
    def contexts(self) -> Tuple[str, ...]:
        return tuple(sorted({str(s.context) for s in self._sequences.values()}))

    @property
    def superseded(self) -> int:
        return sum(s.superseded for s in self._sequences.values())

    def write(self, chunk: List[Series]) -> None:
        touched = set()
        for series in chunk:
            if not len(series):
                continue
            key = series.key
            if key in touched:  # the same sequence twice in a chunk: the first part must be in
                self._commit()
                touched.clear()
            touched.add(key)
            self._note_times(series)
            if series.kind == METRIC:
                self._write_metric(series, key)
            else:
                self._write_objects(series, key)
        self._commit()

    def finish(self) -> Dict[str, int]:
        """Write every sequence's metadata; the points written (read less superseded), by kind."""
        written: Dict[str, int] = {}
        for sequence in self._sequences.values():
            if sequence.kind == METRIC:
                self._finish_metric(sequence)
            else:
                self._finish_objects(sequence)
            written[sequence.kind] = written.get(sequence.kind, 0) + sequence.points - sequence.superseded
            if sequence.superseded:
                self.on_skip(Skip(self.origin, SUPERSEDED_REASON, 'point', count=sequence.superseded,
                                  detail=f'{sequence.name} {context_key(sequence.context)}'))
        self._commit()
        return written

    # ------------------------------------------------------------------------------------------ common

    def _note_times(self, series: Series) -> None:
        if len(series) <= _FEW:
            low, high = float(min(series.wall_times)), float(max(series.wall_times))
        else:
            times = np.asarray(series.wall_times, dtype=np.float64)
            low, high = float(times.min()), float(times.max())
        self.first_time = low if self.first_time is None else min(self.first_time, low)
        self.last_time = high if self.last_time is None else max(self.last_time, high)

    def _sequence(self, series: Series, key: Tuple[str, str, str], version: int) -> Tuple[_Sequence, bool]:
        """The sequence's state, and whether this is its first part in this write."""
        sequence = self._sequences.get(key)
        if sequence is not None:
            return sequence, False
        ctx_id = self._context_ids.get(key[2])
        if ctx_id is None:
            ctx = Context(series.context)
            self.run.meta_tree['contexts', ctx.idx] = ctx.to_dict()
            self.run.meta_run_tree['contexts', ctx.idx] = ctx.to_dict()
            ctx_id = self._context_ids[key[2]] = ctx.idx
        base = self._bases.get(version)
        if base is None:  # the sequences tree's own prefix, when it is a local container's
            container = getattr(self.run.series_run_trees[version], 'container', None)
            local = isinstance(container, PrefixView) and isinstance(container.parent, RocksContainer)
            base = self._bases[version] = container.prefix if local else False
            if local and self._batch is None:
                self._batch = storage.RecordBatch(container.parent)
        # a subtree's prefix is its tree's and its path's (``ContainerTreeView.subtree``), built here
        # without the view objects: runs of many tags make hundreds of thousands
        prefix = base + storage.encode_path((ctx_id, series.name)) if base is not False else None
        sequence = self._sequences[key] = _Sequence(series.kind, series.name, series.context, ctx_id, prefix)
        return sequence, True

    def _commit(self) -> None:
        if self._batch is not None:
            self._batch.commit()

    def _commit_if_large(self) -> None:
        if self._batch is not None and self._batch.size >= storage.COMMIT_BYTES:
            self._batch.commit()

    def _repeated_in_db(self, keys: List[bytes]) -> int:
        """How many of these value keys the sequence already holds in this write."""
        self._commit()  # what this chunk added so far must be visible
        rocks = self._batch.container
        return sum(1 for key in keys if rocks.get(key) is not None)

    # ----------------------------------------------------------------------------------------- metrics

    def _write_metric(self, series: Series, key: Tuple[str, str, str]) -> None:
        sequence, first = self._sequence(series, key, 2)
        if len(series) <= _FEW and sequence.prefix is not None and (first or min(series.steps) > sequence.last_step):
            self._write_few_metric_points(sequence, first, series)
            return
        steps = np.asarray(series.steps, dtype=np.int64)
        values = np.asarray(series.values, dtype=np.float64)
        times = np.asarray(series.wall_times, dtype=np.float64)
        superseded = _repeats_within(steps)
        if not first and sequence.prefix is not None and steps.min() <= sequence.last_step:
            earlier = np.unique(steps[steps <= sequence.last_step])
            superseded += self._repeated_in_db([storage.metric_value_key(sequence.prefix, s) for s in earlier.tolist()])
        elif not first and sequence.prefix is None:
            raise ValueError(f'{series.name}: a remote sequence must be written whole, in one part')
        self._track_ends(sequence, first, steps, values)
        sequence.points += len(steps)
        sequence.superseded += superseded
        numbers = values[~np.isnan(values)]
        if numbers.size:  # RunTracker's comparisons never make NaN a min or max (inf they do)
            sequence.low = min(sequence.low, float(numbers.min()))
            sequence.high = max(sequence.high, float(numbers.max()))
            sequence.any_number = True
        if sequence.prefix is not None:
            if first:
                self._begin_metric(sequence)
            storage.metric_records(self._batch, sequence.prefix, steps, values, times)
            self._commit_if_large()
        else:
            self._set_whole_metric(sequence, steps, values, times)

    def _write_few_metric_points(self, sequence: _Sequence, first: bool, series: Series) -> None:
        """``_write_metric`` for a part of a few points that repeats no step written before (runs of many
        tags: one point a tag), in plain Python: numpy's per-call cost would exceed the work."""
        steps, values, times = series.steps.tolist(), series.values.tolist(), series.wall_times.tolist()
        superseded = len(steps) - len(set(steps))
        low_step, high_step = min(steps), max(steps)
        if first or low_step <= sequence.first_step:
            at = len(steps) - 1 - steps[::-1].index(low_step)  # at a repeated step the later point wins
            sequence.first_step, sequence.first = low_step, values[at]
        if first or high_step >= sequence.last_step:
            at = len(steps) - 1 - steps[::-1].index(high_step)
            sequence.last_step, sequence.last = high_step, values[at]
        sequence.points += len(steps)
        sequence.superseded += superseded
        numbers = [v for v in values if v == v]  # not NaN
        if numbers:
            sequence.low = min(sequence.low, min(numbers))
            sequence.high = max(sequence.high, max(numbers))
            sequence.any_number = True
        if first:
            self._begin_metric(sequence)
        storage.few_metric_records(self._batch, sequence.prefix, steps, values, times)
        self._commit_if_large()

    def _begin_metric(self, sequence: _Sequence) -> None:
        """A metric sequence's first part in this write: its old points go (unless the container is new),
        and its four subtrees are arrays."""
        if not self._fresh:
            storage.delete_range(self._batch, sequence.prefix)
        storage.array_flags(self._batch, sequence.prefix, storage.METRIC_ARRAYS)

    def _set_whole_metric(self, sequence: _Sequence, steps: np.ndarray, values: np.ndarray,
                          times: np.ndarray) -> None:
        tree = self.run.series_run_trees[2]
        step_list = steps.tolist()
        keys = [hash_auto(s) for s in step_list]
        tree.set((sequence.ctx_id, sequence.name), {
            'val': dict(zip(keys, values.tolist())),
            'step': dict(zip(keys, step_list)),
            'epoch': dict.fromkeys(keys),
            'time': dict(zip(keys, times.tolist())),
        })
        subtree = tree.subtree((sequence.ctx_id, sequence.name))
        for array_name in storage.METRIC_ARRAYS:
            subtree.make_array(array_name)

    def _finish_metric(self, sequence: _Sequence) -> None:
        if sequence.superseded and sequence.prefix is not None:
            self._recompute_range(sequence)
        run, ctx_id, name = self.run, sequence.ctx_id, sequence.name
        run.meta_tree['traces_types', 'float', ctx_id, name] = 1
        run.meta_run_tree['typed_traces', 'metric', ctx_id, name] = 1
        info = {'dtype': 'float', 'version': 2, 'first': float(sequence.first), 'first_step': sequence.first_step,
                'last': float(sequence.last), 'last_step': sequence.last_step}
        if sequence.any_number:
            info['min'] = sequence.low
            info['max'] = sequence.high
        run.meta_run_tree['traces', ctx_id, name] = info

    def _recompute_range(self, sequence: _Sequence) -> None:
        """Min and max of the values the sequence holds (a superseded point's value is gone)."""
        self._commit()
        prefix = sequence.prefix + storage.ARRAY_PATHS['val']
        values = storage.decode_floats([value for key, value in self._batch.container.items(prefix)
                                        if len(key) > len(prefix)])
        numbers = values[~np.isnan(values)]
        sequence.any_number = bool(numbers.size)
        if numbers.size:
            sequence.low, sequence.high = float(numbers.min()), float(numbers.max())

    # ----------------------------------------------------------------------------------------- objects

    def _write_objects(self, series: Series, key: Tuple[str, str, str]) -> None:
        """An object sequence (images, distributions, text, audio): Aim's version-1 layout, values keyed
        by the step itself, no step array."""
        sequence, first = self._sequence(series, key, 1)
        convert = OBJECT_CONVERTERS[series.kind]
        objects = [convert(payload) for payload in series.values]
        # A tag with one sample at some steps and several at others: Aim takes a sequence of one type
        # only, so when any step holds a list, every step does (steps written before are rewritten).
        if any(isinstance(o, list) for o in objects) and not sequence.as_lists:
            sequence.as_lists = True
            if not first:
                sequence.singles_written = True
                sequence.first = [sequence.first]
                sequence.last = [sequence.last]
        if sequence.as_lists:
            objects = [o if isinstance(o, list) else [o] for o in objects]
            sequence.record_max_length = max(sequence.record_max_length, max(len(o) for o in objects))
        steps = np.asarray(series.steps, dtype=np.int64)
        superseded = _repeats_within(steps)
        repeated: List[int] = []
        if not first and sequence.prefix is not None and steps.min() <= sequence.last_step:
            earlier = np.unique(steps[steps <= sequence.last_step]).tolist()
            held = set(self._held_steps(sequence, earlier))
            repeated = [s for s in earlier if s in held]
            superseded += len(repeated)
        elif not first and sequence.prefix is None:
            raise ValueError(f'{series.name}: a remote sequence must be written whole, in one part')
        self._track_ends(sequence, first, steps, objects)
        sequence.points += len(steps)
        sequence.superseded += superseded
        step_list = steps.tolist()
        value = {  # at a repeated step the dict keeps the later point
            'val': dict(zip(step_list, objects)),
            'epoch': dict.fromkeys(step_list),
            'time': dict(zip(step_list, (float(t) for t in series.wall_times))),
        }
        if sequence.prefix is not None:
            for step in repeated:  # a step written before: its old object (maybe a longer list) goes
                storage.delete_range(self._batch, sequence.prefix + storage.encode_path(('val', step)))
            storage.assignment(self._batch, sequence.prefix, value, replace=first and not self._fresh)
            storage.array_flags(self._batch, sequence.prefix, storage.OBJECT_ARRAYS)
            self._commit_if_large()
        else:
            tree = self.run.series_run_trees[1]
            tree.set((sequence.ctx_id, sequence.name), value)
            for array_name in storage.OBJECT_ARRAYS:
                tree.subtree((sequence.ctx_id, sequence.name)).make_array(array_name)

    def _held_steps(self, sequence: _Sequence, steps: List[int]) -> List[int]:
        keys = [sequence.prefix + storage.encode_path(('val', step)) for step in steps]
        self._commit()
        rocks = self._batch.container
        return [step for step, key in zip(steps, keys) if rocks.get(key) is not None]

    def _finish_objects(self, sequence: _Sequence) -> None:
        if sequence.singles_written:
            self._rewrite_as_lists(sequence)
        run, ctx_id, name = self.run, sequence.ctx_id, sequence.name
        dtype = get_object_typename(sequence.first)
        run.meta_tree['traces_types', dtype, ctx_id, name] = 1
        run.meta_run_tree['typed_traces', SEQUENCE_TYPE_MAP.get(dtype, 'sequence'), ctx_id, name] = 1
        info = {'dtype': dtype, 'version': 1, 'first': sequence.first, 'first_step': sequence.first_step,
                'last': sequence.last, 'last_step': sequence.last_step}
        if sequence.as_lists:
            info['record_max_length'] = sequence.record_max_length
        run.meta_run_tree['traces', ctx_id, name] = info

    def _rewrite_as_lists(self, sequence: _Sequence) -> None:
        """Steps written as single objects before a step with several came: each becomes a list of one.
        Moved in storage, byte for byte: a single's records at ``val/STEP/...`` go to ``val/STEP/0/...``,
        and ``val/STEP`` becomes an array."""
        self._commit()
        rocks = self._batch.container
        val_prefix = sequence.prefix + storage.encode_path(('val',))
        by_step: Dict[Any, List[Tuple[Tuple, bytes, Any]]] = {}
        for key, value in rocks.items(val_prefix):  # full keys; the first is ``val``'s own array flag
            path = _encoding.decode_path(key[len(val_prefix):])
            if path:
                by_step.setdefault(path[0], []).append((path, key, value))
        for step, records in by_step.items():
            step_key = val_prefix + storage.encode_path((step,))
            if any(len(path) == 1 and value == storage.ARRAY_FLAG for path, _, value in records):
                continue  # a list already
            storage.delete_range(self._batch, step_key)
            storage.put_value(self._batch, step_key, storage.ARRAY_FLAG)
            element = step_key + storage.encode_path((0,))
            for _, key, value in records:
                storage.put_value(self._batch, element + key[len(step_key):], value)
            sequence.record_max_length = max(sequence.record_max_length, 1)
        self._commit()

    # ------------------------------------------------------------------------------------------ ends

    @staticmethod
    def _track_ends(sequence: _Sequence, first: bool, steps: np.ndarray, values) -> None:
        """The first (lowest step) and last (highest step) points; at a tie the later point wins."""
        if len(steps) == 1:
            low_step = high_step = int(steps[0])
            if first or low_step <= sequence.first_step:
                sequence.first_step, sequence.first = low_step, values[0]
            if first or high_step >= sequence.last_step:
                sequence.last_step, sequence.last = high_step, values[0]
            return
        low_step, high_step = int(steps.min()), int(steps.max())
        low_at = int(np.flatnonzero(steps == low_step)[-1])
        high_at = int(np.flatnonzero(steps == high_step)[-1])
        if first or low_step <= sequence.first_step:
            sequence.first_step, sequence.first = low_step, values[low_at]
        if first or high_step >= sequence.last_step:
            sequence.last_step, sequence.last = high_step, values[high_at]


_FEW = storage.FEW


def _repeats_within(steps: np.ndarray) -> int:
    """How many points of a part are superseded by a later point at the same step in the same part."""
    if len(steps) < 2 or bool((steps[1:] > steps[:-1]).all()):
        return 0
    return int(len(steps) - len(np.unique(steps)))

