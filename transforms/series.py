"""The coarse elements that flow between runferry's transforms, and the run a sink writes.

A ``Series`` holds the points of one sequence (kind, name, context) in column form, so one Beam element
carries thousands of points. A ``RunData`` is everything the sink needs to write one run.
"""
from __future__ import annotations

import dataclasses
import json
from array import array
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ['Series', 'RunSpec', 'RunData', 'Skip', 'context_key', 'merge_series']

METRIC = 'metric'


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
    creation_time: Optional[float] = None
    end_time: Optional[float] = None


@dataclasses.dataclass
class RunData:
    spec: RunSpec
    series: List[Series]
    # points kept as run attributes instead of sequences (e.g. TensorBoard hparams), by kind
    attribute_points: Dict[str, int] = dataclasses.field(default_factory=dict)


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
