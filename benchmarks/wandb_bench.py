"""``make bench``'s W&B step (issue 19): runferry's ``.wandb`` reader against W&B's own Python reader on the
same files, and ``python -m pipelines.wandb_to_aim`` on directories of 10 and of 1,000 W&B runs, for its
rate and for its peak memory as the number of runs grows.

    python -m benchmarks.run --wandb-only [--wandb-runs 10,1000] [--wandb-reader-runs 50] [--trials 3]

The runs: one run written once by the real ``wandb`` package in offline mode (``WANDB_MODE=offline``,
no network; 2,000 history rows of 8 keys, two of them nested, and a config), cached under the bench
cache; a directory of N runs holds N hard links of its ``.wandb`` file, each under its own run id in
W&B's own layout (``wandb/offline-run-<time>-<id>/run-<id>.wandb``), which runferry takes as N runs.

1. The readers side by side, on the ``.wandb`` files of a directory of ``--wandb-reader-runs`` runs:
   runferry's (``connectors.wandb_file.iter_records``: chunks CRC-checked and joined, each record parsed
   into W&B's ``Record`` proto; ``benchmarks.wandb_reader_runferry``) against W&B's own Python reader
   (``wandb.sdk.internal.datastore.DataStore`` + the same ``Record`` parse, what ``wandb sync`` ran in
   Python; ``benchmarks/wandb_reader_own.py`` in the venv of ``benchmarks.wandb_reader_venv``: wandb
   0.29.0, the newest release that ships it; the pinned wandb 0.31 reads these files only in its Go
   ``wandb-core``, and only to sync them to a server). Each is a subprocess that times its own reading
   (start-up and imports excluded), in ``--trials`` interleaved pairs (the order alternating); the ratio
   is the median pair's records/s. Both readers' counts (records, by record type, history rows and
   items) must be equal: a difference is printed loudly and recorded, not hidden.
2. ``python -m pipelines.wandb_to_aim`` on directories of ``--wandb-runs`` runs (10 and 1,000): runs/s,
   points/s and records/s end to end (records/s beside the readers' above), and the peak memory of the
   process tree and of its largest process, which must stay flat as the runs grow.
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
from typing import Any, Dict, List, Optional

from benchmarks.measure import TreeMemory, machine, set_aside

__all__ = ['measure_wandb', 'compare_readers', 'reader_commands', 'counts_differ', 'wandb_files', 'ensure_wandb_run',
           'ensure_wandb_dir', 'ROWS', 'KEYS', 'READER_RUNS']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'RESULTS.md')
ROWS = 2000
READER_RUNS = 50  # runs whose files the readers read, side by side (~6,000 records a run)
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


def wandb_files(wandb_dir: str) -> List[str]:
    """The ``.wandb`` files of a directory made by ``ensure_wandb_dir``, in run order."""
    return sorted(glob.glob(os.path.join(wandb_dir, 'wandb', '*-run-*', '*.wandb')))


def reader_commands(wandb_python: str, files: List[str]) -> Dict[str, List[str]]:
    """The two readers' commands over ``files``: runferry's in this venv, W&B's in its own venv."""
    return {'runferry': [sys.executable, '-m', 'benchmarks.wandb_reader_runferry'] + files,
            # -I: the script's directory (benchmarks/) is not put on W&B's import path
            'wandb': [wandb_python, '-I', os.path.join(HERE, 'wandb_reader_own.py')] + files}


_COUNTED = ('files', 'records', 'by_type', 'history_rows', 'history_items')


def counts_differ(ours: Dict[str, Any], theirs: Dict[str, Any]) -> List[str]:
    """What the two readers counted differently (``key: runferry X, wandb Y``), and runferry's problems
    (an intact file has none); empty when they agree."""
    diffs = [f'{key}: runferry {ours.get(key)!r}, wandb {theirs.get(key)!r}'
             for key in _COUNTED if ours.get(key) != theirs.get(key)]
    return diffs + [f'runferry reported a problem: {problem}' for problem in ours.get('problems', [])]


def _run_reader(cmd: List[str]) -> Dict[str, Any]:
    """One reader in a subprocess: its JSON counts and timing, the process's wall time and peak memory."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeMemory(proc.pid) as memory:
        output, errors = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f'{cmd[0]} {cmd[1]} ... failed ({proc.returncode}):\n{errors[-3000:]}')
    result = json.loads(output)
    result.update(wall=wall, peak_mb=memory.peak_total / 2 ** 20)
    return result


def compare_readers(wandb_python: str, files: List[str], trials: int, log=print) -> Dict[str, Any]:
    """runferry's reader and W&B's on ``files``, in ``trials`` interleaved pairs (runferry first in odd
    trials, W&B first in even ones): every pair, the median pair (by ratio of records/s), and every
    difference between the counts of any run."""
    commands = reader_commands(wandb_python, files)
    pairs, differences = [], []
    for trial in range(1, trials + 1):
        order = ['runferry', 'wandb'] if trial % 2 else ['wandb', 'runferry']
        pair = {name: _run_reader(commands[name]) for name in order}
        ours, theirs = pair['runferry'], pair['wandb']
        pair['ratio'] = ours['records_per_s'] / theirs['records_per_s']
        pairs.append(pair)
        differences += [f'trial {trial}: {diff}' for diff in counts_differ(ours, theirs)]
        log(f'readers, trial {trial}: runferry {ours["records_per_s"]:,.0f} records/s ({ours["seconds"]:.2f}s), '
            f'{theirs["reader"]} {theirs["records_per_s"]:,.0f} records/s ({theirs["seconds"]:.2f}s) '
            f'-> {pair["ratio"]:.2f}x', flush=True)
    median = sorted(pairs, key=lambda pair: pair['ratio'])[len(pairs) // 2]
    return {'pairs': pairs, 'median': median, 'differences': differences, 'files': len(files)}


def _reader_lines(readers: Dict[str, Any]) -> List[str]:
    """The side-by-side's summary: rates, counts, ratio; a loud line per difference."""
    ours, theirs = readers['median']['runferry'], readers['median']['wandb']
    ratios = ', '.join(f'{pair["ratio"]:.2f}x' for pair in readers['pairs'])
    lines = [f'readers, {readers["files"]} files, median of {len(readers["pairs"])} pairs: runferry '
             f'{ours["records_per_s"]:,.0f} records/s, {theirs["reader"]} {theirs["records_per_s"]:,.0f} records/s: '
             f'**{readers["median"]["ratio"]:.2f}x** (pairs: {ratios})']
    for name, result in (('runferry', ours), ('wandb', theirs)):
        lines.append(f'{name} counted {result["records"]:,} records in {result["files"]} files '
                     f'({", ".join(f"{kind} {count:,}" for kind, count in result["by_type"].items())}), '
                     f'{result["history_rows"]:,} history rows of {result["history_items"]:,} items; process '
                     f'{result["wall"]:.1f}s wall with start-up, peak memory {result["peak_mb"]:.0f} MB')
    if readers['differences']:
        lines += [f'!!! COUNTS DIFFER: {diff}' for diff in readers['differences']]
    else:
        lines.append('counts equal in every trial (records, by record type, history rows and items); runferry '
                     'reported no problem')
    return lines


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


def measure_wandb(cache: str, sizes: List[int], extra: List[str], record: bool, trials: int = 3,
                  reader_runs: int = READER_RUNS) -> List[Dict[str, Any]]:
    """1. the readers side by side on ``reader_runs`` runs' files (0: not compared), 2. ``wandb_to_aim``
    on each of ``sizes``; printed, and appended to RESULTS.md if ``record``."""
    template = ensure_wandb_run(cache)
    print(f'wandb run: {template} ({os.path.getsize(template) / 2 ** 20:.1f} MB, {ROWS:,} rows x {KEYS} keys)',
          flush=True)
    readers = None
    if reader_runs:
        from benchmarks.wandb_reader_venv import ensure_venv

        files = wandb_files(ensure_wandb_dir(cache, template, reader_runs))
        readers = compare_readers(ensure_venv(cache), files, trials)
        for line in _reader_lines(readers):
            print(line, flush=True, file=sys.stderr if line.startswith('!!!') else sys.stdout)
    # every run is the template's file: its record count is the readers' count over their files
    records_per_run = readers['median']['runferry']['records'] / readers['files'] if readers else None
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
        result.update(runs=runs, points=counters['points_written'],
                      records=runs * records_per_run if records_per_run else None)
        measured.append(result)
        print(f'wandb_to_aim, {runs:,} runs: {result["wall"]:.1f}s, {runs / result["wall"]:.1f} runs/s, '
              f'{result["points"] / result["wall"]:,.0f} points/s, {_records_rate(result)} records/s, peak memory '
              f'{result["peak_tree_mb"]:.0f} MB (process tree) / {result["peak_process_mb"]:.0f} MB (largest process)',
              flush=True)
    if record:
        _record(measured, readers, extra)
        print(f'appended to {os.path.relpath(RESULTS, ROOT)}', flush=True)
    return measured


def _records_rate(result: Dict[str, Any]) -> str:
    return f'{result["records"] / result["wall"]:,.0f}' if result['records'] else '-'


def _record(measured: List[Dict[str, Any]], readers: Optional[Dict[str, Any]], extra: List[str]) -> None:
    info = machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    with open(RESULTS, 'a') as out:
        out.write(f'\n## {now}: W&B → Aim, runs of {ROWS:,} rows x {KEYS} keys\n\n')
        out.write(f'- machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}; Python {info["python"]}; '
                  f'load average at the end {info["load"]}\n')
        out.write(f'- data: `benchmarks.wandb_bench`, one run written by wandb 0.31 offline, hard-linked under N run '
                  f'ids; command `{" ".join(["python -m pipelines.wandb_to_aim --wandb-dir DIR --repo REPO"] + extra)}`\n')
        if readers:
            out.write('- readers side by side, each a subprocess timing its own reading (start-up and imports '
                      'excluded), interleaved pairs: runferry\'s `connectors.wandb_file.iter_records` (CRC-checked '
                      'chunks joined, `Record` parsed) against W&B\'s own Python reader, '
                      '`wandb.sdk.internal.datastore.DataStore.scan_data` + `Record.ParseFromString` from wandb 0.29.0 '
                      '(the newest release that ships it) in its own pinned venv; protobuf 6.33.6 (upb) in both\n')
            out.writelines(f'  - {line}\n' for line in _reader_lines(readers))
        else:
            out.write('- readers not compared (`--wandb-reader-runs 0`)\n')
        out.write('\n| runs | wall | runs/s | points/s | records/s | peak memory (tree / largest process) |\n'
                  '|---|---|---|---|---|---|\n')
        for m in measured:
            out.write(f'| {m["runs"]:,} | {m["wall"]:.1f}s | {m["runs"] / m["wall"]:.1f} | '
                      f'{m["points"] / m["wall"]:,.0f} | {_records_rate(m)} | '
                      f'{m["peak_tree_mb"]:.0f} MB / {m["peak_process_mb"]:.0f} MB |\n')
