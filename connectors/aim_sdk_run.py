"""Runs written through Aim's own SDK: opening one with a chosen hash, its props, closing it at the
source's end time, and ``TrackedSequences``, which writes sequences through Aim's tracker.

Two writers open runs this way: ``aim://`` repos (the server writes the props; sequences given whole go
in through the trees, ``connectors.aim_sequences``), and every repo when ``connectors.aim_version``
chose Aim's API (an untested Aim or aimrocks, or ``RUNFERRY_AIM_WRITE_PATH=api``), where
``TrackedSequences`` writes each point as Aim itself does, chunk by chunk as the source reads them.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from aim.sdk.repo import Repo
from aim.sdk.run import BasicRun
from aim.sdk.utils import get_object_typename

from connectors.aim_objects import OBJECT_CONVERTERS
from connectors.aim_repo import utc_datetime
from connectors.aim_run_hash import chosen_run_hash
from runmodel import METRIC, SUPERSEDED_REASON, RunSpec, Series, Skip, context_key

__all__ = ['open_sdk_run', 'set_run_props', 'close_sdk_run', 'TrackedSequences', 'REFUSED_REASON']

logger = logging.getLogger(__name__)

REFUSED_REASON = "refused by Aim's API"


def open_sdk_run(repo: Repo, run_hash: str, creation_time: Optional[float]) -> BasicRun:
    """The run ``run_hash`` opened for writing: resumed when it exists, else created with that hash and
    the source's creation time (its props, and so its date in Aim's UI, are created before the run)."""
    if repo.run_exists(run_hash):
        return BasicRun(run_hash, repo=repo)
    repo.request_props(run_hash, False, created_at=utc_datetime(creation_time))
    with chosen_run_hash(run_hash):
        return BasicRun(repo=repo)


def set_run_props(run: BasicRun, spec: RunSpec) -> None:
    """Name, experiment, description, attributes and tags as the source has them: a tag since removed
    from the source (or whose value changed) goes."""
    run.name = spec.name
    run.experiment = spec.experiment
    if spec.description is not None:
        run.description = spec.description
    for key, value in spec.attributes.items():
        run[key] = value
    existing_tags = {getattr(tag, 'name', tag) for tag in run.props.tags}
    for tag in sorted(existing_tags - set(spec.tags)):
        run.remove_tag(tag)
    for tag in spec.tags:
        if tag not in existing_tags:
            run.add_tag(tag)


def close_sdk_run(run: BasicRun, end_time: Optional[float]) -> None:
    """``run.close()``, but stamped with the source's end time, so the run shows as finished when the
    original run ended (not at the time of conversion)."""
    if end_time is not None:
        meta_run_tree = run.meta_run_tree
        run._resources.set_run_end_time = lambda: meta_run_tree.__setitem__('end_time', end_time)
        try:
            run.props.finalized_at = utc_datetime(end_time)
        except Exception:  # remote props proxies may not take it; end_time in the meta tree is what counts
            logger.debug('could not set finalized_at for %s', run.hash, exc_info=True)
    run.close()


@dataclasses.dataclass
class _Tracked:
    """A sequence as tracked in this write: what counting superseded and refused points needs."""
    kind: str
    name: str
    context: Dict[str, Any]
    steps: List[np.ndarray] = dataclasses.field(default_factory=list)  # tracked so far, part by part
    highest: int = 0
    points: int = 0
    superseded: int = 0
    refused: int = 0
    refusal: str = ''  # Aim's first reason
    as_lists: bool = False  # objects: some step held several, so every later step is tracked as a list


class TrackedSequences:
    """Writes a run's chunks of series through Aim's tracker, point by point, each with the source's
    wall time (``RunTracker._track``, as Aim's own converters pass it: ``run.track`` would stamp the time
    of the conversion); on ``aim://`` repos each chunk is one batch of instructions.

    The semantics are the storage path's: at a repeated step the later point wins and the earlier one
    is counted as superseded (one dead letter per sequence); a re-run tracks the same steps again, which
    replaces them (no point is duplicated). Memory holds the steps tracked (8 bytes a point), to count
    superseded points across chunks. A point Aim refuses (a step holding several images after steps that
    held one were written: Aim takes one type per sequence) is a dead letter, with Aim's reason."""

    def __init__(self, run: BasicRun, origin: str, on_skip: Callable[[Skip], None]):
        self.run = run
        self.origin = origin
        self.on_skip = on_skip
        self._sequences: Dict[Tuple[str, str, str], _Tracked] = {}
        self.first_time: Optional[float] = None
        self.last_time: Optional[float] = None

    @property
    def points(self) -> int:
        """Points read so far, superseded and refused ones included."""
        return sum(s.points for s in self._sequences.values())

    @property
    def superseded(self) -> int:
        return sum(s.superseded for s in self._sequences.values())

    @property
    def contexts(self) -> Tuple[str, ...]:
        return tuple(sorted({str(s.context) for s in self._sequences.values()}))

    def write(self, chunk: List[Series]) -> None:
        with self.run.repo.atomic_track(self.run.hash):
            for series in chunk:
                if len(series):
                    self._write(series)

    def finish(self) -> Dict[str, int]:
        """The points written (read less superseded and refused), by kind; the dead letters sent."""
        written: Dict[str, int] = {}
        for sequence in self._sequences.values():
            kept = sequence.points - sequence.superseded - sequence.refused
            written[sequence.kind] = written.get(sequence.kind, 0) + kept
            detail = f'{sequence.name} {context_key(sequence.context)}'
            if sequence.superseded:
                self.on_skip(Skip(self.origin, SUPERSEDED_REASON, 'point', count=sequence.superseded, detail=detail))
            if sequence.refused:
                self.on_skip(Skip(self.origin, f'{REFUSED_REASON}: {sequence.refusal}', 'point',
                                  count=sequence.refused, detail=detail))
        return written

    def _write(self, series: Series) -> None:
        key = series.key
        sequence = self._sequences.get(key)
        if sequence is None:
            sequence = self._sequences[key] = _Tracked(series.kind, series.name, series.context)
        steps = np.asarray(series.steps, dtype=np.int64)
        sequence.superseded += self._superseded(sequence, steps)
        sequence.steps.append(steps)
        sequence.highest = max(sequence.highest, int(steps.max())) if sequence.points else int(steps.max())
        sequence.points += len(steps)
        times = np.asarray(series.wall_times, dtype=np.float64)
        self._note_times(times)
        track = self.run._tracker._track
        for step, wall_time, value in zip(steps.tolist(), times.tolist(), self._values(sequence, series)):
            try:
                track(value, wall_time, series.name, step, None, context=series.context)
            except (ValueError, TypeError) as error:
                sequence.refused += 1
                sequence.refusal = sequence.refusal or f'a {get_object_typename(value)} value: {_short(error)}'

    @staticmethod
    def _superseded(sequence: _Tracked, steps: np.ndarray) -> int:
        """Points of this part that replace a point of the same step: within the part, or tracked before
        (looked up only for steps not above the highest one tracked)."""
        superseded = len(steps) - len(np.unique(steps)) if len(steps) > 1 else 0
        if sequence.points and int(steps.min()) <= sequence.highest:
            earlier = np.unique(steps[steps <= sequence.highest])
            superseded += int(np.isin(earlier, np.concatenate(sequence.steps)).sum())
        return superseded

    @staticmethod
    def _values(sequence: _Tracked, series: Series) -> List[Any]:
        """Python floats for a metric; Aim objects for other kinds, every step a list once any step holds
        several (as the storage path writes them)."""
        if series.kind == METRIC:
            return np.asarray(series.values, dtype=np.float64).tolist()
        convert = OBJECT_CONVERTERS[series.kind]
        objects = [convert(payload) for payload in series.values]
        sequence.as_lists = sequence.as_lists or any(isinstance(o, list) for o in objects)
        if sequence.as_lists:
            objects = [o if isinstance(o, list) else [o] for o in objects]
        return objects

    def _note_times(self, times: np.ndarray) -> None:
        low, high = float(times.min()), float(times.max())
        self.first_time = low if self.first_time is None else min(self.first_time, low)
        self.last_time = high if self.last_time is None else max(self.last_time, high)


def _short(error: BaseException, limit: int = 200) -> str:
    """Aim's message, without the addresses of the objects it shows (a dead letter reads the same each run)."""
    text = re.sub(r' object at 0x[0-9a-fA-F]+', ' object', f'{type(error).__name__}: {error}')
    return text if len(text) <= limit else text[:limit - 3] + '...'
