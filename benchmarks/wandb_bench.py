"""``make bench``'s W&B step: ``python -m pipelines.wandb_to_aim`` on directories of 10 and of 1,000 W&B
runs, for its rate and for its peak memory as the number of runs grows (issue 19).

    python -m benchmarks.run --wandb-only [--wandb-runs 10,1000]

The runs: one run written once by the real ``wandb`` package in offline mode (``WANDB_MODE=offline``,
no network; 2,000 history rows of 8 keys, two of them nested, and a config), cached under the bench
cache; a directory of N runs holds N hard links of its ``.wandb`` file, each under its own run id in
W&B's own layout (``wandb/offline-run-<time>-<id>/run-<id>.wandb``), which runferry takes as N runs.

There is no side-by-side: the pinned wandb (0.31) ships no reader of ``.wandb`` files a user could run
instead. Its reader is Go code inside ``wandb-core`` that only ``wandb sync`` runs, and only towards a
W&B server; ``aim convert wandb`` and SwanLab's converter read through W&B's server API. So the figures
are runferry's own: runs/s and points/s end to end, the reader's records/s alone (in this process, for
the file's records), and the peak memory of the process tree and of its largest process.
"""
from __future__ import annotations

import datetime
import glob
import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any, Dict, List

from benchmarks.measure import TreeMemory, machine, set_aside

__all__ = ['measure_wandb', 'ensure_wandb_run', 'ensure_wandb_dir', 'ROWS', 'KEYS']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'RESULTS.md')
ROWS = 2000
KEYS = 8  # loss, acc, lr, grad/norm, grad/max, val/loss, val/acc, epoch: every row holds all of them
_WRITER = textwrap.dedent('''
    import os, sys
    os.environ.update(WANDB_MODE='offline', WANDB_SILENT='true', WANDB_DIR=sys.argv[1])
    import wandb
    run = wandb.init(project='bench', id='template', config={'lr': 0.001, 'batch': 64, 'opt': {'name': 'adam'}})
    for i in range(%d):
        run.log({'loss': 1.0 / (i + 1), 'acc': i / %d, 'lr': 0.001 * 0.999 ** i,
                 'grad': {'norm': (i %% 17) / 17.0, 'max': (i %% 5) / 5.0},
                 'val': {'loss': 2.0 / (i + 2), 'acc': (i %% 100) / 100.0}, 'epoch': i // 100})
    run.finish()
''' % (ROWS, ROWS))


def ensure_wandb_run(cache: str) -> str:
    """The ``.wandb`` file of the template run (written once by wandb itself, offline)."""
    root = os.path.join(cache, f'wandb-template-{ROWS}')
    found = glob.glob(os.path.join(root, 'wandb', 'offline-run-*', '*.wandb'))
    if found and os.path.exists(os.path.join(root, '.complete')):
        return found[0]
    set_aside(root)
    os.makedirs(root)
    subprocess.run([sys.executable, '-c', _WRITER, root], check=True, timeout=600,
                   env=dict(os.environ, WANDB_MODE='offline', WANDB_SILENT='true'))
    open(os.path.join(root, '.complete'), 'w').close()
    return glob.glob(os.path.join(root, 'wandb', 'offline-run-*', '*.wandb'))[0]


def ensure_wandb_dir(cache: str, template: str, runs: int) -> str:
    """A W&B directory of ``runs`` runs: hard links of ``template`` under run ids ``bench00000``..."""
    root = os.path.join(cache, f'wandb-{runs}-runs-{ROWS}')
    if os.path.exists(os.path.join(root, '.complete')):
        return root
    set_aside(root)
    for index in range(runs):
        run_id = f'bench{index:05d}'
        directory = os.path.join(root, 'wandb', f'offline-run-20261129_120000-{run_id}')
        os.makedirs(directory)
        os.link(template, os.path.join(directory, f'run-{run_id}.wandb'))
    open(os.path.join(root, '.complete'), 'w').close()
    return root


def reader_rate(path: str, repeats: int = 20) -> float:
    """Records/s of ``connectors.wandb_file.iter_records`` alone on ``path`` (decoded protobufs)."""
    from connectors.wandb_file import iter_records

    records = 0
    started = time.perf_counter()
    for _ in range(repeats):
        with open(path, 'rb') as stream:
            records += sum(1 for _ in iter_records(stream))
    return records / (time.perf_counter() - started)


def run_wandb_to_aim(wandb_dir: str, repo: str, extra: List[str]) -> Dict[str, Any]:
    set_aside(repo)
    report = repo + '.report.json'
    cmd = [sys.executable, '-m', 'pipelines.wandb_to_aim', '--wandb-dir', wandb_dir, '--repo', repo,
           '--report', report] + extra
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeMemory(proc.pid) as memory:
        output, _ = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f'wandb_to_aim failed ({proc.returncode}):\n{output[-3000:]}')
    with open(report) as stream:
        counters = json.load(stream)['counters']
    return {'wall': wall, 'counters': counters, 'peak_tree_mb': memory.peak_total / 2 ** 20,
            'peak_process_mb': memory.peak_single / 2 ** 20}


def measure_wandb(cache: str, sizes: List[int], extra: List[str], record: bool) -> List[Dict[str, Any]]:
    template = ensure_wandb_run(cache)
    rate = reader_rate(template)
    print(f'wandb run: {template} ({os.path.getsize(template) / 2 ** 20:.1f} MB, {ROWS:,} rows x {KEYS} keys); '
          f'the reader alone: {rate:,.0f} records/s', flush=True)
    measured = []
    for runs in sizes:
        wandb_dir = ensure_wandb_dir(cache, template, runs)
        result = run_wandb_to_aim(wandb_dir, os.path.join(cache, f'aim-wandb-{runs}'), extra)
        counters = result['counters']
        expected_points = runs * ROWS * KEYS
        if counters.get('runs_written') != runs or counters.get('points_written', 0) < expected_points:
            raise SystemExit(f'wandb_to_aim wrote {counters.get("runs_written")} runs and '
                             f'{counters.get("points_written")} points; expected {runs} runs and at least '
                             f'{expected_points} points')
        result.update(runs=runs, points=counters['points_written'])
        measured.append(result)
        print(f'wandb_to_aim, {runs:,} runs: {result["wall"]:.1f}s, {runs / result["wall"]:.1f} runs/s, '
              f'{result["points"] / result["wall"]:,.0f} points/s, peak memory {result["peak_tree_mb"]:.0f} MB '
              f'(process tree) / {result["peak_process_mb"]:.0f} MB (largest process)', flush=True)
    if record:
        _record(measured, rate, extra)
        print(f'appended to {os.path.relpath(RESULTS, ROOT)}', flush=True)
    return measured


def _record(measured: List[Dict[str, Any]], rate: float, extra: List[str]) -> None:
    info = machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    with open(RESULTS, 'a') as out:
        out.write(f'\n## {now}: W&B → Aim, runs of {ROWS:,} rows x {KEYS} keys\n\n')
        out.write(f'- machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}; Python {info["python"]}; '
                  f'load average at the end {info["load"]}\n')
        out.write(f'- data: `benchmarks.wandb_bench`, one run written by wandb 0.31 offline, hard-linked under N run '
                  f'ids; command `python -m pipelines.wandb_to_aim --wandb-dir DIR --repo REPO {" ".join(extra)}`\n')
        out.write(f'- the reader alone (`connectors.wandb_file.iter_records`): {rate:,.0f} records/s; no side-by-side: '
                  f'wandb 0.31 ships no reader of .wandb files a user could run instead\n\n')
        out.write('| runs | wall | runs/s | points/s | peak memory (tree / largest process) |\n|---|---|---|---|---|\n')
        for m in measured:
            out.write(f'| {m["runs"]:,} | {m["wall"]:.1f}s | {m["runs"] / m["wall"]:.1f} | '
                      f'{m["points"] / m["wall"]:,.0f} | {m["peak_tree_mb"]:.0f} MB / {m["peak_process_mb"]:.0f} MB |\n')
