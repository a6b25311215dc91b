"""The coarse elements that flow between runferry's transforms, and the run a sink writes.

A ``Series`` holds the points of one sequence (kind, name, context) in column form, so one Beam element
carries thousands of points. A ``RunData`` is everything the sink needs to write one run: its ``spec``
and its series, either held (``series``) or read while the sink writes (``stream``), chunk by chunk, so
that a run of any size is written in bounded memory.
"""
from __future__ import annotations

import dataclasses
import json
from array import array
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

__all__ = ['Series', 'RunSpec', 'RunData', 'RunItem', 'Skip', 'context_key', 'merge_series', 'METRIC', 'SUPERSEDED_REASON',
           'read_whole', 'LOG_LINE', 'TERMINAL_LOGS']

METRIC = 'metric'
# A line of the run's terminal output; its payload is ``{'text': str, 'stream': str}`` (``stream``: the
# streams its pieces were written to, ``stdout``, ``stderr``, or ``stderr,stdout`` for both). A run's lines are one
# series, ``TERMINAL_LOGS`` in the empty context, stepped 0, 1, 2, ... in the order they were written
# (the name and layout of Aim's own terminal-log capture, which Aim's UI shows in its Logs tab).
LOG_LINE = 'log_line'
TERMINAL_LOGS = 'logs'
SUPERSEDED_REASON = 'duplicate step: superseded by a later event with the same step'


def context_key(context: Optional[Dict[str, Any]]) -> str:
    """A stable, hashable form of an Aim context dict."""
    return json.dumps(context or {}, sort_keys=True)


@dataclasses.dataclass
class Series:
    """Points of one sequence in source order; ``order`` breaks ties between duplicate steps."""
    kind: str
    name: str
    context: Dict[str, Any]
    steps: array = dataclasses.field(default_factory=lambda: array('q'))
    wall_times: array = dataclasses.field(default_factory=lambda: array('d'))
    # float array for metrics; a list of payloads for other kinds
    values: Any = None
    # (source, position) sort key of each point, e.g. (file path, byte offset); one source per Series
    source: str = ''
    positions: array = dataclasses.field(default_factory=lambda: array('q'))

    def __post_init__(self):
        if self.values is None:
            self.values = array('d') if self.kind == METRIC else []

    @property
    def key(self) -> Tuple[str, str, str]:
        return self.kind, self.name, context_key(self.context)

    def append(self, step: int, wall_time: float, value: Any, position: int) -> None:
        self.steps.append(step)
        self.wall_times.append(wall_time)
        self.values.append(value)
        self.positions.append(position)

    def __len__(self) -> int:
        return len(self.steps)


def merge_series(parts: List[Series]) -> Tuple[Series, int]:
    """One series from parts of it, ordered by step; at a duplicate step the last written point wins.

    "Last written" is source order: by (source, position). Returns the merged series and the number
    of points it superseded (reported as skipped, never silently dropped).
    """
    if len(parts) == 1 and _strictly_increasing(parts[0].steps):  # the common case: nothing to merge
        return parts[0], 0
    parts = sorted(parts, key=lambda s: (s.source, s.positions[0] if len(s.positions) else -1))
    first = parts[0]
    rows = []
    for part_index, part in enumerate(parts):
        for i in range(len(part)):
            rows.append((part.steps[i], part_index, part.positions[i], part.wall_times[i], part.values[i]))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    merged = Series(first.kind, first.name, first.context, source=first.source)
    superseded = 0
    for i, row in enumerate(rows):
        if i + 1 < len(rows) and rows[i + 1][0] == row[0]:
            superseded += 1
            continue
        merged.append(row[0], row[3], row[4], row[2])
    return merged, superseded


def _strictly_increasing(steps: array) -> bool:
    if len(steps) < 2:
        return True
    column = np.frombuffer(steps, dtype=np.int64)
    return bool((column[1:] > column[:-1]).all())


@dataclasses.dataclass
class RunSpec:
    """What an Aim run is called and what it carries, besides its sequences."""
    # a string that names the source run for good; the Aim run hash is derived from it
    identity: str
    name: str
    experiment: str
    attributes: Dict[str, Any] = dataclasses.field(default_factory=dict)
    description: Optional[str] = None
    tags: List[str] = dataclasses.field(default_factory=list)
    # None: the first and last wall time of the run's points
    creation_time: Optional[float] = None
    end_time: Optional[float] = None
    # where the run was read from (a URL, a run id), as dead letters name it; None: ``identity``
    origin: Optional[str] = None


# A chunk of a run's series, or a dead letter met while reading them.
RunItem = Union[List['Series'], 'Skip']


@dataclasses.dataclass
class RunData:
    spec: RunSpec
    series: List[Series] = dataclasses.field(default_factory=list)
    # points kept as run attributes instead of sequences (e.g. TensorBoard hparams), by kind
    attribute_points: Dict[str, int] = dataclasses.field(default_factory=dict)
    # A source that reads while the sink writes: called with this RunData, it yields chunks of series
    # (any sequence may continue over several chunks) and dead letters, and may complete ``spec`` (its
    # attributes) and ``attribute_points`` when it ends. Picklable. None: the run is ``series``.
    stream: Optional[Callable[['RunData'], Iterator[RunItem]]] = None
    # points the stream has handed over so far, attribute points included (what a failed run loses)
    points_seen: int = 0

    def items(self) -> Iterator[RunItem]:
        """The run's series as chunks, with the dead letters of reading them, in source order."""
        if self.stream is not None:
            yield from self.stream(self)
        elif self.series:
            yield self.series

    @property
    def origin(self) -> str:
        return self.spec.origin or self.spec.identity


@dataclasses.dataclass(frozen=True)
class Skip:
    """A dead letter: something read that was not written, and why."""
    source: str
    reason: str
    kind: str  # 'file' | 'record' | 'point' | 'run' | 'artifact'
    offset: Optional[int] = None
    count: int = 1
    detail: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if v is not None}, sort_keys=True)


def read_whole(data: RunData, on_skip: Callable[[Skip], None]) -> Tuple[Optional[RunData], int]:
    """The run with all its series read and merged (one ``Series`` per sequence, unique steps, the last
    written point of a step kept) and its start and end completed from its points; and the number of
    points superseded. For destinations that take a run whole (an ``aim://`` server, MLflow, which needs
    a run's start time when it creates the run): their memory grows with the run. Dead letters of
    reading, and one per sequence with superseded points, go to ``on_skip``. None when a streamed source
    held no point (no run is made)."""
    parts: Dict[Tuple[str, str, str], List[Series]] = {}
    for item in data.items():
        if isinstance(item, Skip):
            on_skip(item)
            continue
        for series in item:
            if len(series):
                parts.setdefault(series.key, []).append(series)
    if data.stream is not None and not parts and not data.attribute_points:
        return None, 0
    merged, superseded = [], 0
    for key in sorted(parts):
        series, dropped = merge_series(parts[key])
        merged.append(series)
        superseded += dropped
        if dropped:
            on_skip(Skip(data.origin, SUPERSEDED_REASON, 'point', count=dropped, detail=f'{series.name} {key[2]}'))
    spec = dataclasses.replace(data.spec, attributes=dict(data.spec.attributes))
    if merged and spec.creation_time is None:
        spec.creation_time = min(min(s.wall_times) for s in merged)
    if merged and spec.end_time is None:
        spec.end_time = max(max(s.wall_times) for s in merged)
    return RunData(spec, merged, dict(data.attribute_points)), superseded
