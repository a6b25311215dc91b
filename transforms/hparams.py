"""A run's attribute series (TensorBoard hparams and their config) → its Aim run attributes, losing nothing.

Hparams are events like any other: each context of a run (``train``, ``version_0``, tensorboardX's
``add_hparams`` subdirectory) can carry its own, and one context can log them more than once. Aim
keeps one value per attribute name, so:

* within one context, the points are merged in step order; where a later point gives a name another
  value, the later one is kept and the earlier point is reported as skipped (a ``Skip`` naming both
  values; the earlier point's other values are kept). A skipped point is not counted as written, so
  points read = written + skipped;
* a run whose attribute comes from one context: ``hparams`` is that context's values, as before;
* a run whose contexts carry it differently: ``hparams`` holds the names every context agrees on
  (a name with different values in two contexts is left out), and ``hparams_by_context`` holds each
  context's values in full, keyed by the context's directory name (``.`` for the run's own files),
  findable with Aim's query language: ``run.hparams_by_context.version_1.lr == 0.02``.

The same for ``hparams_config`` (``hparams_config_by_context``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from runmodel import Series, Skip

__all__ = ['merge_run_attributes', 'merge_in_context', 'context_label', 'BY_CONTEXT_SUFFIX', 'OWN_FILES']

BY_CONTEXT_SUFFIX = '_by_context'
OWN_FILES = '.'  # the label of a run's own files (no context), as TensorBoard names a logdir's own run


def context_label(context: Dict[str, Any]) -> str:
    return str(context['entry']) if context.get('entry') is not None else OWN_FILES


def _shown(values: Dict[str, Any]) -> str:
    return ', '.join(f'{name}={value!r}' for name, value in sorted(values.items()))


def merge_in_context(series: Series, source: str) -> Tuple[Dict[str, Any], int, List[Skip]]:
    """One context's attribute points (a merged series, in step order) → (its values, points written,
    a Skip for each point one of whose values a later point replaced)."""
    merged: Dict[str, Any] = {}
    set_at: Dict[str, int] = {}  # name -> index of the point its kept value came from
    dropped: Dict[int, Dict[str, Tuple[Any, Any, int]]] = {}  # point index -> name -> (dropped, kept, kept step)
    for index, values in enumerate(series.values):
        for name, value in values.items():
            if name in merged and merged[name] != value:
                dropped.setdefault(set_at[name], {})[name] = (merged[name], value, series.steps[index])
            merged[name] = value
            set_at[name] = index
    skips = []
    for index, names in sorted(dropped.items()):
        lost = ', '.join(f'{name}={old!r} (kept {name}={new!r} from step {step})'
                         for name, (old, new, step) in sorted(names.items()))
        skips.append(Skip(source, f'{series.kind} value replaced by a later one in the same context', 'point',
                          detail=f'{context_label(series.context)} step {series.steps[index]}: {lost}'))
    return merged, len(series) - len(dropped), skips


def _agreed(by_context: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The names whose value is the same in every context that has them."""
    agreed: Dict[str, Any] = {}
    conflicting = set()
    for values in by_context.values():
        for name, value in values.items():
            if name in agreed and agreed[name] != value:
                conflicting.add(name)
            agreed.setdefault(name, value)
    return {name: value for name, value in agreed.items() if name not in conflicting}


def merge_run_attributes(series: List[Series], source: str) -> Tuple[Dict[str, Any], Dict[str, int], List[Skip]]:
    """A run's attribute series (any kinds, any contexts) → (attributes, points written by kind, skips)."""
    by_kind: Dict[str, Dict[str, Dict[str, Any]]] = {}
    written: Dict[str, int] = {}
    skips: List[Skip] = []
    for one in sorted(series, key=lambda s: (s.kind, context_label(s.context))):
        values, points, dropped = merge_in_context(one, source)
        by_kind.setdefault(one.kind, {})[context_label(one.context)] = values
        written[one.kind] = written.get(one.kind, 0) + points
        skips += dropped
    attributes: Dict[str, Any] = {}
    for kind, by_context in by_kind.items():
        first = next(iter(by_context.values()))
        if all(values == first for values in by_context.values()):  # one context, or all alike
            attributes[kind] = first
        else:
            attributes[kind] = _agreed(by_context)
            attributes[kind + BY_CONTEXT_SUFFIX] = by_context
    return attributes, written, skips
