"""Series whose names Aim cannot hold are set aside as dead letters before a run is written."""
from __future__ import annotations

from typing import List, Tuple

from connectors.aim_names import aim_sequence_name_problem
from runmodel import Series, Skip

__all__ = ['hold_aim_names']


def hold_aim_names(series: List[Series], run_source: str) -> Tuple[List[Series], List[Skip]]:
    """``series`` → (those Aim can hold, a dead letter for each other one). A dead letter names the
    sequence (kind, name as ``repr``, context, and the file it was read from, where the series knows
    one) and the run's ``run_source``, and counts its points as skipped, so that points read = written + skipped still holds."""
    kept: List[Series] = []
    skips: List[Skip] = []
    for one in series:
        problem = aim_sequence_name_problem(one.name)
        if problem is None:
            kept.append(one)
        else:
            where = f' in {one.source}' if one.source and one.source != one.name else ''
            skips.append(Skip(run_source, problem, 'point', count=len(one),
                              detail=f'{one.kind} {one.name!r} context {one.context}{where}'))
    return kept, skips
