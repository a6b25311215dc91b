"""Which directories of a TensorBoard logdir are runs, groups and contexts.

The rules are Aim's documented converter rules, resolved the way ``aim convert tensorboard`` resolves
them (``aim/cli/convert/processors/tensorboard.py``), so users get the runs they know:

* every directory that directly holds an event file is a *candidate*; candidates are visited deepest
  first (ties by path, so any listing order gives the same plan);
* a candidate at depth 1 is a run;
* a deeper candidate is a *context*: its parent becomes the run and its grandparent a group; if that
  parent is already a group, the candidate is a run itself. With ``flat``, every deeper candidate is a
  run and its parent a group;
* a candidate that is a group (or the logdir itself) holds "unorganized" event files: they are ignored.

Where ``aim convert`` walks each run recursively and can put one file in two runs, here each event
file goes to exactly one place: the run it sits in (no context), else the run its directory sits in
(context = its directory's name), else it is ignored.

Paths are relative POSIX paths below the logdir; ``''`` is the logdir itself.
"""
from __future__ import annotations

import dataclasses
import posixpath
from typing import Dict, Iterable, List, Optional, Tuple

__all__ = ['EventFileAssignment', 'Plan', 'classify', 'is_event_file']


def is_event_file(name: str) -> bool:
    """TensorBoard event files: ``events.out.tfevents.<time>.<host>...`` (any name holding 'tfevents')."""
    return 'tfevents' in posixpath.basename(name)


@dataclasses.dataclass(frozen=True, order=True)
class EventFileAssignment:
    run: str
    context: Optional[str]
    path: str


@dataclasses.dataclass
class Plan:
    # run dir -> context (None: directly in the run) -> sorted event file paths
    runs: Dict[str, Dict[Optional[str], List[str]]]
    ignored: List[str]

    def assignments(self) -> List[EventFileAssignment]:
        return [
            EventFileAssignment(run, context, path)
            for run, contexts in sorted(self.runs.items())
            for context, paths in sorted(contexts.items(), key=lambda kv: (kv[0] is not None, kv[0] or ''))
            for path in paths
        ]


def _depth(directory: str) -> int:
    return 0 if directory == '' else directory.count('/') + 1


def _parent(directory: str) -> str:
    return posixpath.dirname(directory)


def _resolve_runs(candidates: Iterable[str], flat: bool) -> Tuple[set, set]:
    runs, groups, ignored = set(), set(), set()
    for candidate in sorted(set(candidates), key=lambda d: (-_depth(d), d)):
        if candidate in runs:
            continue
        if candidate in groups:
            ignored.add(candidate)
            continue
        depth = _depth(candidate)
        if depth == 0:
            ignored.add(candidate)
            continue
        if depth == 1:
            runs.add(candidate)
            continue
        if flat:
            groups.add(_parent(candidate))
            runs.add(candidate)
        else:
            run = _parent(candidate)
            groups.add(_parent(run))
            runs.add(candidate if run in groups else run)
    return runs, ignored


def classify(event_files: Iterable[str], flat: bool = False) -> Plan:
    """Sort relative event-file paths into runs and contexts; the rest is ignored."""
    files = sorted({f.strip('/') for f in event_files if is_event_file(f)})
    runs, ignored_dirs = _resolve_runs((_parent(f) for f in files), flat)
    plan: Dict[str, Dict[Optional[str], List[str]]] = {}
    ignored: List[str] = []
    for path in files:
        directory = _parent(path)
        if directory in ignored_dirs:
            ignored.append(path)
        elif directory in runs:
            plan.setdefault(directory, {}).setdefault(None, []).append(path)
        elif _parent(directory) in runs:
            plan.setdefault(_parent(directory), {}).setdefault(posixpath.basename(directory), []).append(path)
        else:
            ignored.append(path)
    return Plan(runs=plan, ignored=ignored)
