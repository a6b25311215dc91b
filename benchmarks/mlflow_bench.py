"""``make bench``'s MLflow step: a store of many small runs (``benchmarks.mlflow_store``, 1,052 runs by
default, as issue 16 describes the common case) converted by ``python -m pipelines.mlflow_to_aim``,
beside mlflow-export-import's ``export-experiments`` on the same store as the yardstick.

    python -m benchmarks.run --mlflow-only [--mlflow-runs 1052] [--trials 3]

1. runferry, exactly as the README runs it, in a subprocess: wall time, runs/s, points/s and the peak
   memory of its process tree; its report (``--report``) must count every run and point of the store.
2. mlflow-export-import 1.2.0 (``python -m mlflow_export_import.bulk.export_experiments --experiments
   all``, MLflow's own migration tool: it reads each run through ``MlflowClient`` and writes JSON files),
   installed with ``pip install --target`` into the cache, not into the venv: it pins pytest and
   pytest-html as run-time dependencies and needs ``tabulate`` without declaring it. It must export every
   run. Where it cannot be installed (no registry), its published rate (~17 runs/s) is the yardstick and
   the output says so.

(2) and (1) are timed as ``--trials`` back-to-back pairs (the machine's speed drifts; both halves of a
pair see the same speed); the ratio is the median pair's.
"""
from __future__ import annotations

import datetime
import glob
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from benchmarks.measure import TreeMemory, machine, set_aside
from benchmarks.mlflow_store import ensure_store

__all__ = ['measure_mlflow', 'run_mlflow_to_aim', 'run_export_experiments', 'ensure_export_import',
           'EXPORT_IMPORT', 'PUBLISHED_EXPORT_RATE']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'RESULTS.md')
# mlflow-export-import and what it imports beyond MLflow, exactly (installed --no-deps into the cache)
EXPORT_IMPORT = ('mlflow-export-import==1.2.0', 'shortuuid==1.0.13', 'tabulate==0.10.0')
PUBLISHED_EXPORT_RATE = 17.0  # runs/s, mlflow-export-import's own published figure (issue 16)


def _timed(cmd: List[str], env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """``cmd`` in a subprocess from the project's root: wall time, peak memory of its tree, its output."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, **(env or {})))
    with TreeMemory(proc.pid) as memory:
        output, _ = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f'{" ".join(cmd[:4])} failed ({proc.returncode}):\n{output[-3000:]}')
    return {'wall': wall, 'peak_tree_mb': memory.peak_total / 2 ** 20,
            'peak_process_mb': memory.peak_single / 2 ** 20, 'output': output}


def run_mlflow_to_aim(uri: str, repo: str, extra: List[str]) -> Dict[str, Any]:
    """The README's command on the store; its report's counters."""
    set_aside(repo)
    report = repo + '.report.json'
    cmd = [sys.executable, '-m', 'pipelines.mlflow_to_aim', '--tracking-uri', uri, '--repo', repo,
           '--report', report] + extra
    result = _timed(cmd)
    with open(report) as stream:
        result['counters'] = json.load(stream)['counters']
    result['cmd'] = ' '.join(['python'] + cmd[1:-2])
    return result


def ensure_export_import(cache: str) -> Optional[str]:
    """The directory mlflow-export-import is installed in (``pip install --target``, once), or None when
    pip cannot install it here."""
    target = os.path.join(cache, 'tools', 'mlflow-export-import-1.2.0')
    if os.path.exists(os.path.join(target, '.complete')):
        return target
    proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps', '--target', target,
                           *EXPORT_IMPORT], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f'mlflow-export-import could not be installed: {proc.stderr.strip().splitlines()[-1:]}', flush=True)
        return None
    open(os.path.join(target, '.complete'), 'w').close()
    return target


def run_export_experiments(uri: str, out: str, tool: str, runs: int) -> Dict[str, Any]:
    """mlflow-export-import's ``export-experiments --experiments all`` of the store into ``out``; it must
    have exported every run (one ``run.json`` each)."""
    set_aside(out)
    cmd = [sys.executable, '-m', 'mlflow_export_import.bulk.export_experiments', '--experiments', 'all',
           '--output-dir', out]
    result = _timed(cmd, env={'PYTHONPATH': tool, 'MLFLOW_TRACKING_URI': uri})
    exported = len(glob.glob(os.path.join(out, '**', 'run.json'), recursive=True))
    if exported != runs:
        raise SystemExit(f'export-experiments exported {exported} runs of {runs}')
    return result


def measure_mlflow(cache: str, runs: int, trials: int, extra: List[str], record: bool) -> Dict[str, Any]:
    """The MLflow step: the store, the pairs, the printed and recorded figures."""
    started = time.perf_counter()
    uri, expected = ensure_store(cache, runs)
    points = expected['metric_points'] + expected['artifacts']
    print(f'mlflow store: {uri} ({runs:,} runs, {expected["metric_points"]:,} metric points, '
          f'{expected["artifacts"]} artifacts; ready in {time.perf_counter() - started:.1f}s)', flush=True)
    tool = ensure_export_import(cache)
    pairs = []
    for trial in range(1, trials + 1):
        export = run_export_experiments(uri, os.path.join(cache, 'mlflow-export'), tool, runs) if tool else None
        ours = run_mlflow_to_aim(uri, os.path.join(cache, 'aim-mlflow'), extra)
        counters = ours['counters']
        if counters.get('runs_written') != runs or counters.get('points_written') != points:
            raise SystemExit(f'mlflow_to_aim wrote {counters.get("runs_written")} runs and '
                             f'{counters.get("points_written")} points; the store holds {runs} and {points}')
        yardstick = runs / export['wall'] if export else PUBLISHED_EXPORT_RATE
        pairs.append((runs / ours['wall'] / yardstick, ours, export))
        print(f'trial {trial}: mlflow_to_aim {ours["wall"]:.1f}s ({runs / ours["wall"]:.1f} runs/s)'
              + (f', export-experiments {export["wall"]:.1f}s ({runs / export["wall"]:.1f} runs/s)' if export else '')
              + f' -> {pairs[-1][0]:.1f}x', flush=True)
    ratio, ours, export = sorted(pairs, key=lambda pair: pair[0])[len(pairs) // 2]
    peak_tree = max(pair[1]['peak_tree_mb'] for pair in pairs)
    print(f'mlflow_to_aim, {runs:,} runs (median pair): {ours["wall"]:.1f}s, {runs / ours["wall"]:.1f} runs/s, '
          f'{points / ours["wall"]:,.0f} points/s, peak memory {peak_tree:.0f} MB (process tree); '
          + (f'export-experiments {export["wall"]:.1f}s, {runs / export["wall"]:.1f} runs/s; ' if export else
             f'export-experiments not installed: against its published ~{PUBLISHED_EXPORT_RATE:.0f} runs/s; ')
          + f'{ratio:.1f}x (pairs: {", ".join(f"{p[0]:.1f}x" for p in pairs)})', flush=True)
    measured = {'uri': uri, 'runs': runs, 'points': points, 'ratio': ratio, 'ours': ours, 'export': export,
                'pairs': [p[0] for p in pairs], 'peak_tree_mb': peak_tree,
                'peak_process_mb': max(pair[1]['peak_process_mb'] for pair in pairs)}
    if record:
        _record(measured, extra)
        print(f'appended to {os.path.relpath(RESULTS, ROOT)}', flush=True)
    return measured


def _record(m: Dict[str, Any], extra: List[str]) -> None:
    info = machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    ours, export, runs = m['ours'], m['export'], m['runs']
    with open(RESULTS, 'a') as out:
        out.write(f'\n## {now}: MLflow → Aim, {runs:,} small runs\n\n')
        out.write(f'- machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}; Python {info["python"]}; '
                  f'load average at the end {info["load"]}\n')
        out.write(f'- data: `benchmarks.mlflow_store`, a SQLite store of {runs:,} runs in 4 experiments, 30 metric '
                  f'points (3 keys x 10 steps), 6 params and 2 tags a run; every 100th run a PNG and a text '
                  f'artifact ({m["points"]:,} points)\n')
        out.write(f'- command: `{ours["cmd"]}`{" " + " ".join(extra) if extra else ""}\n\n')
        out.write('| measurement | wall | runs/s | points/s | peak memory (tree / largest process) |\n')
        out.write('|---|---|---|---|---|\n')
        out.write(f'| runferry mlflow_to_aim (median pair) | {ours["wall"]:.1f}s | {runs / ours["wall"]:.1f} | '
                  f'{m["points"] / ours["wall"]:,.0f} | {m["peak_tree_mb"]:.0f} MB / {m["peak_process_mb"]:.0f} MB |\n')
        if export:
            out.write(f'| mlflow-export-import 1.2.0 `export-experiments --experiments all` (same pair) | '
                      f'{export["wall"]:.1f}s | {runs / export["wall"]:.1f} | {m["points"] / export["wall"]:,.0f} | '
                      f'{export["peak_tree_mb"]:.0f} MB / {export["peak_process_mb"]:.0f} MB |\n')
        out.write('\n')
        against = 'export-experiments measured beside it' if export else \
            f'mlflow-export-import\'s published ~{PUBLISHED_EXPORT_RATE:.0f} runs/s (not installable here)'
        out.write(f'- runferry: **{m["ratio"]:.1f}x** the runs/s of {against}, the median of {len(m["pairs"])} '
                  f'pairs measured back to back ({", ".join(f"{r:.1f}x" for r in m["pairs"])}); every run and point '
                  f'counted written in its report\n')
