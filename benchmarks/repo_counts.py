"""What an Aim repo holds, counted through Aim's SDK as a user would read it: runs, and per run the
sequences and points of each kind. Used to check that two conversions of one logdir hold the same.

A run is keyed by the directory it came from: the base name of its ``tensorboard_logdir`` attribute,
which both ``aim convert tensorboard`` and runferry set (runferry also names the run so).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Tuple

__all__ = ['KINDS', 'RepoCounts', 'count_repo', 'compare_counts']

# Aim's dtypes of each kind runferry and ``aim convert`` write
KINDS = {'metric': ('float', 'int'), 'image': ('aim.image', 'list(aim.image)'),
         'distribution': ('aim.distribution',)}


@dataclasses.dataclass
class RepoCounts:
    """Per run key: {kind: points} and {kind: sequences}."""
    points: Dict[str, Dict[str, int]]
    sequences: Dict[str, Dict[str, int]]

    @property
    def runs(self) -> int:
        return len(self.points)

    def total(self, kind: str) -> int:
        return sum(by_kind.get(kind, 0) for by_kind in self.points.values())

    def total_sequences(self, kind: str) -> int:
        return sum(by_kind.get(kind, 0) for by_kind in self.sequences.values())


def _run_key(run) -> str:
    logdir = run.get('tensorboard_logdir')
    return os.path.basename(str(logdir).rstrip('/')) if logdir else (run.name or run.hash)


def count_repo(repo_path: str) -> RepoCounts:
    from aim import Repo

    repo = Repo.from_path(repo_path)
    points: Dict[str, Dict[str, int]] = {}
    sequences: Dict[str, Dict[str, int]] = {}
    for run in repo.iter_runs():
        key = _run_key(run)
        if key in points:
            raise SystemExit(f'{repo_path}: two runs from the directory {key}')
        run_points, run_sequences = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
        for kind, dtypes in KINDS.items():
            for name, context, _ in run.iter_sequence_info_by_type(dtypes):
                sequence = run.get_metric(name, context) if kind == 'metric' else \
                    (run.get_image_sequence if kind == 'image' else run.get_distribution_sequence)(name, context)
                steps, _ = sequence.data.items_list()
                run_points[kind] += len(steps)
                run_sequences[kind] += 1
        points[key], sequences[key] = run_points, run_sequences
    return RepoCounts(points, sequences)


def compare_counts(ours: RepoCounts, theirs: RepoCounts) -> List[Tuple[str, str]]:
    """(what, how it differs) for every kind and run set where ``theirs`` does not hold what ``ours`` does,
    or holds more; empty when both hold the same runs, sequences and points."""
    differences = []
    if set(ours.points) != set(theirs.points):
        missing, extra = set(ours.points) - set(theirs.points), set(theirs.points) - set(ours.points)
        differences.append(('runs', f'{len(missing)} missing (e.g. {sorted(missing)[:3]}), '
                                    f'{len(extra)} extra (e.g. {sorted(extra)[:3]})'))
    for kind in KINDS:
        a, b = ours.total(kind), theirs.total(kind)
        if a != b or ours.total_sequences(kind) != theirs.total_sequences(kind):
            differences.append((kind, f'{b:,} of {a:,} points in {theirs.total_sequences(kind):,} of '
                                      f'{ours.total_sequences(kind):,} sequences'))
        elif any(ours.points[k].get(kind, 0) != theirs.points.get(k, {}).get(kind, 0) for k in ours.points):
            differences.append((kind, 'the same total, spread differently over the runs'))
    return differences
