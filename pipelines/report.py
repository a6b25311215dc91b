"""What a person reads: the dry-run plan and the end-of-run report."""
from __future__ import annotations

import sys
from typing import Dict, Optional

from transforms.classify import Plan

__all__ = ['print_plan', 'print_report']


def print_plan(source, plan: Plan, experiment: str, out=None) -> None:
    out = out or sys.stdout
    print(f'Plan for {source.logdir} (experiment {experiment!r}): {len(plan.runs)} run(s), '
          f'{sum(len(f) for c in plan.runs.values() for f in c.values())} event file(s), '
          f'{len(plan.ignored)} ignored', file=out)
    for run, contexts in sorted(plan.runs.items()):
        print(f'run {run}', file=out)
        for context, files in sorted(contexts.items(), key=lambda kv: (kv[0] is not None, kv[0] or '')):
            print(f'  context {context if context is not None else "(none)"}', file=out)
            for path in files:
                print(f'    {path}', file=out)
    if plan.ignored:
        print('ignored (unorganized event files):', file=out)
        for path in plan.ignored:
            print(f'  {path}', file=out)


def print_report(counters: Dict[str, int], elapsed: float, repo: str, skipped_path: Optional[str],
                 out=None) -> None:
    out = out or sys.stdout
    written = counters.get('points_written', 0)
    rows = [
        ('runs written', counters.get('runs_written', 0)),
        ('runs failed', counters.get('runs_failed', 0)),
        ('files read', counters.get('files_read', 0)),
        ('files skipped', counters.get('files_skipped', 0)),
        ('files ignored', counters.get('files_ignored', 0)),
        ('records read', counters.get('records_read', 0)),
        ('records skipped', counters.get('records_skipped', 0)),
        ('points read', counters.get('points_read', 0)),
        ('points written', written),
        ('points skipped', counters.get('points_skipped', 0)),
    ]
    width = max(len(name) for name, _ in rows)
    print('runferry report', file=out)
    for name, value in rows:
        print(f'  {name:<{width}}  {value:>12,}', file=out)
    kinds = sorted({name.split(':', 1)[1] for name in counters if name.startswith(('points_read:', 'points_written:'))})
    if kinds:
        print(f'  {"points by kind":<{width}}  {"read":>12}  {"written":>12}', file=out)
        for kind in kinds:
            print(f'  {"  " + kind:<{width}}  {counters.get("points_read:" + kind, 0):>12,}  '
                  f'{counters.get("points_written:" + kind, 0):>12,}', file=out)
    rate = written / elapsed if elapsed > 0 else 0.0
    print(f'  {"elapsed":<{width}}  {elapsed:>11.1f}s  ({rate:,.0f} points/s)', file=out)
    if skipped_path:
        print(f'  skipped items are listed in {skipped_path}', file=out)
    if not repo.startswith('aim://'):
        print(f'View the result: aim up --repo {repo}', file=out)
