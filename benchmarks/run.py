"""``make bench``: runferry's TensorBoard → Aim backfill against Aim's per-point path, on the same data.

    python -m benchmarks.run [--runs 200] [--small-runs 50] [--sample-runs 6] [--cache .bench]
                             [--no-record] [-- extra tf_to_aim flags...]

1. ``python -m pipelines.tf_to_aim --logdir L --repo R`` exactly as the README runs it, in a subprocess:
   wall time, points/s and the peak memory of its process tree (psutil, polled), for ``--runs`` and for
   ``--small-runs`` runs (memory must stay flat as runs grow). The converted repo is then read back
   through the Aim SDK and compared, point by point, with what the writers wrote.
2. Aim's per-point path on the same decoded records: a fresh repo, one ``Run`` per source run, and per
   point ``run._tracker._track(value, wall_time, name, step, None, context=...)`` (what ``aim convert``
   calls). Timed on ``--sample-runs`` runs and extrapolated to points/s (it is too slow to time whole).
3. Decode only, on the same sample's files: runferry's ``read_event_stream`` against the ``tensorboard``
   package's ``EventFileLoader`` (which yields protos and decodes nothing further).

Results are printed and appended to ``benchmarks/RESULTS.md`` with the machine and date.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

import psutil

from benchmarks.logdir import (CONTEXTS, STEPS, TAGS, ensure_logdir, extras_available, run_names, run_salt,
                               subset_logdir)

__all__ = ['main', 'run_tf_to_aim', 'per_point_rate', 'decode_rates', 'verify_repo', 'machine']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'RESULTS.md')


def machine() -> Dict[str, str]:
    cpu = platform.processor() or 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        'cores': str(os.cpu_count()),
        'ram': f'{psutil.virtual_memory().total / 2 ** 30:.1f} GiB',
        'cpu': cpu,
        'python': platform.python_version(),
        'load': ' '.join(f'{x:.1f}' for x in os.getloadavg()),
    }


class TreeMemory:
    """Peak resident memory of a process and all its descendants, polled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.peak_single = max(self.peak_single, rss)
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_tf_to_aim(logdir: str, repo: str, extra: List[str]) -> Dict[str, float]:
    """The README's command in a subprocess: wall time and peak memory of its process tree."""
    shutil.rmtree(repo, ignore_errors=True)
    for leftover in (repo + '.skipped.jsonl',):
        if os.path.exists(leftover):
            os.remove(leftover)
    cmd = [sys.executable, '-m', 'pipelines.tf_to_aim', '--logdir', logdir, '--repo', repo] + extra
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeMemory(proc.pid) as memory:
        output, _ = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f'tf_to_aim failed ({proc.returncode}):\n{output[-3000:]}')
    written = 0
    for line in output.splitlines():
        if line.strip().startswith('points written'):
            written = int(line.split()[-1].replace(',', ''))
    return {'wall': wall, 'points_written': written, 'peak_tree_mb': memory.peak_total / 2 ** 20,
            'peak_process_mb': memory.peak_single / 2 ** 20, 'cmd': ' '.join(['python'] + cmd[1:])}


def _sample_files(logdir: str, runs: int) -> List[Tuple[str, str, str]]:
    """(run, context, path) of every event file of the first ``runs`` runs."""
    out = []
    for name in run_names(runs):
        for context in CONTEXTS:
            for path in sorted(glob.glob(os.path.join(logdir, name, context, '*tfevents*'))):
                out.append((name, context, path))
    return out


def _decode(files: List[Tuple[str, str, str]]):
    """runferry's reader over the files: [(run, context, Series), ...] and the time it took."""
    from transforms.events import read_event_stream
    from transforms.series import Series

    started = time.perf_counter()
    out = []
    for run, context, path in files:
        with open(path, 'rb') as stream:
            for item in read_event_stream(stream, path, {'entry': context}):
                if isinstance(item, list):
                    out.extend((run, context, series) for series in item if isinstance(series, Series))
    return out, time.perf_counter() - started


def decode_rates(files: List[Tuple[str, str, str]]) -> Dict[str, float]:
    """Points/s of runferry's reader and events/s of TensorBoard's ``EventFileLoader``; best of two."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    best_ours, points = float('inf'), 0
    for _ in range(2):
        decoded, seconds = _decode(files)
        best_ours = min(best_ours, seconds)
        points = sum(len(series) for _, _, series in decoded)
    best_tb, events, values = float('inf'), 0, 0
    for _ in range(2):
        started = time.perf_counter()
        events = values = 0
        for _, _, path in files:
            for event in EventFileLoader(path).Load():
                events += 1
                if event.HasField('summary'):
                    values += len(event.summary.value)
        best_tb = min(best_tb, time.perf_counter() - started)
    return {'points': points, 'ours_s': best_ours, 'ours_rate': points / best_ours,
            'tb_events': events, 'tb_values': values, 'tb_s': best_tb, 'tb_rate': values / best_tb}


def per_point_rate(files: List[Tuple[str, str, str]], repo_path: str) -> Dict[str, float]:
    """Aim's per-point write path on the sample's decoded records, in a fresh repo at ``repo_path``."""
    from aim.sdk.run import Run

    from connectors.aim_sink import open_repo

    decoded, _ = _decode(files)
    records: Dict[str, List[tuple]] = {}
    for run, context, series in decoded:  # decoded up front: only the writes are timed
        records.setdefault(run, []).extend(
            (float(v), w, series.name, int(s), {'entry': context})
            for s, w, v in zip(series.steps, series.wall_times, series.values))
    points = sum(len(r) for r in records.values())
    shutil.rmtree(repo_path, ignore_errors=True)
    repo = open_repo(repo_path)
    started = time.perf_counter()
    for run_name, rows in records.items():
        run = Run(repo=repo, system_tracking_interval=None, capture_terminal_logs=False, experiment='bench')
        run.name = run_name
        track = run._tracker._track
        for value, wall_time, name, step, context in rows:
            track(value, wall_time, name, step, None, context=context)
        run.close()
    seconds = time.perf_counter() - started
    return {'points': points, 'runs': len(records), 'seconds': seconds, 'rate': points / seconds}


def verify_repo(repo_path: str, runs: int) -> Dict[str, int]:
    """Read the converted repo through the Aim SDK: every run, sequence and point the writers wrote,
    with the same values and wall times. Returns counts; raises on any difference."""
    from aim import Repo

    from benchmarks.logdir import START
    from samples.tensorboard_logs import value_at

    repo = Repo.from_path(repo_path)
    seen_runs, sequences, points, mismatches = set(), 0, 0, []
    for run in repo.iter_runs():
        index = int(run.name.split('_')[1])
        seen_runs.add(run.name)
        for metric in run.metrics():
            context = metric.context.to_dict().get('entry')
            steps, (values, _, times) = metric.data.items_list()
            salt = run_salt(index, context)
            sequences += 1
            points += len(steps)
            if list(steps) != list(range(STEPS)):
                mismatches.append((run.name, context, metric.name, 'steps'))
                continue
            for step, value, wall_time in zip(steps, values, times):
                if value != value_at(metric.name, step, salt) or \
                        abs(wall_time - (START + 86_400 * index + step * 0.5)) > 1e-3:
                    mismatches.append((run.name, context, metric.name, step))
                    break
    expected_runs = set(run_names(runs))
    if seen_runs != expected_runs or sequences != runs * len(CONTEXTS) * len(TAGS) or mismatches:
        raise SystemExit(f'converted repo differs from the source: runs {len(seen_runs)}/{runs}, '
                         f'sequences {sequences}, first mismatches {mismatches[:5]}')
    return {'runs': len(seen_runs), 'sequences': sequences, 'points': points}


def _fmt_rate(x: float) -> str:
    return f'{x:,.0f}'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.run', description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=200)
    parser.add_argument('--small-runs', type=int, default=50)
    parser.add_argument('--sample-runs', type=int, default=6, help='runs timed on the per-point path')
    parser.add_argument('--cache', default=os.path.join(ROOT, '.bench'))
    parser.add_argument('--no-record', action='store_true', help='do not append to benchmarks/RESULTS.md')
    parser.add_argument('extra', nargs='*', help='extra flags for tf_to_aim (after --)')
    args = parser.parse_args(argv)
    os.makedirs(args.cache, exist_ok=True)
    info = machine()
    print(f'machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}, load {info["load"]}', flush=True)

    started = time.perf_counter()
    logdir, points = ensure_logdir(args.cache, args.runs)
    small_logdir, small_points = subset_logdir(args.cache, logdir, args.small_runs)
    print(f'logdir: {logdir} ({args.runs} runs x {len(CONTEXTS)} contexts x {len(TAGS)} tags x {STEPS} steps '
          f'= {points:,} scalar points; ready in {time.perf_counter() - started:.1f}s)', flush=True)
    extras = False  # the logdir holds scalars only (see ``benchmarks.logdir``)
    print('note: scalars only; images/histograms (samples/tensorboard_plugins.py'
          f'{" exists" if extras_available() else " is not in this checkout"}) are not in the benchmark logdir',
          flush=True)

    repo = os.path.join(args.cache, 'aim-full')
    small_repo = os.path.join(args.cache, 'aim-small')
    full = run_tf_to_aim(logdir, repo, args.extra)
    print(f'(1) tf_to_aim, {args.runs} runs: {full["wall"]:.1f}s wall, '
          f'{_fmt_rate(points / full["wall"])} points/s, peak memory {full["peak_tree_mb"]:.0f} MB '
          f'(process tree), {full["peak_process_mb"]:.0f} MB (largest process)', flush=True)
    small = run_tf_to_aim(small_logdir, small_repo, args.extra)
    print(f'    tf_to_aim, {args.small_runs} runs: {small["wall"]:.1f}s wall, '
          f'{_fmt_rate(small_points / small["wall"])} points/s, peak memory {small["peak_tree_mb"]:.0f} MB '
          f'(process tree), {small["peak_process_mb"]:.0f} MB (largest process)', flush=True)
    single = None
    if not args.extra:  # what the DirectRunner defaults are worth: Beam's own single-worker default
        single = run_tf_to_aim(small_logdir, small_repo,
                               ['--direct_running_mode=in_memory', '--direct_num_workers=1'])
        print(f'    tf_to_aim, {args.small_runs} runs, Beam\'s default --direct_running_mode=in_memory '
              f'--direct_num_workers=1: {single["wall"]:.1f}s wall, {_fmt_rate(small_points / single["wall"])} '
              f'points/s (runferry\'s default: {small["wall"] / single["wall"]:.2f}x the time)', flush=True)
    check = verify_repo(repo, args.runs)
    if check['points'] != points or full['points_written'] != points:
        raise SystemExit(f'point count differs: source {points:,}, reported {full["points_written"]:,}, '
                         f'read back {check["points"]:,}')
    print(f'    read back through the Aim SDK: {check["runs"]} runs, {check["sequences"]} sequences, '
          f'{check["points"]:,} points = source (steps, values, wall times)', flush=True)

    files = _sample_files(logdir, args.sample_runs)
    per_point = per_point_rate(files, os.path.join(args.cache, 'aim-per-point'))
    print(f'(2) Aim per-point path (run._tracker._track), sample of {per_point["runs"]} runs / '
          f'{per_point["points"]:,} points: {per_point["seconds"]:.1f}s -> {_fmt_rate(per_point["rate"])} '
          f'points/s; extrapolated to {points:,} points: {points / per_point["rate"]:.0f}s', flush=True)
    decode = decode_rates(files)
    print(f'(3) decode only, same {len(files)} files: runferry {_fmt_rate(decode["ours_rate"])} points/s; '
          f'tensorboard EventFileLoader {_fmt_rate(decode["tb_rate"])} values/s '
          f'(protos only, no value decoding)', flush=True)
    end_to_end = points / full['wall']
    speedup = end_to_end / per_point['rate']
    decode_ratio = decode['ours_rate'] / decode['tb_rate']
    print(f'ratios: end-to-end {speedup:.1f}x the per-point path (target 10x, goal 20x); '
          f'decode {decode_ratio:.1f}x the tensorboard loader', flush=True)

    if not args.no_record:
        record(info, args, points, small_points, full, small, single, check, per_point, decode, speedup,
               decode_ratio, extras, len(files))
        print(f'appended to {os.path.relpath(RESULTS, ROOT)}')
    return 0


def record(info, args, points, small_points, full, small, single, check, per_point, decode, speedup,
           decode_ratio, extras, files) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    new = not os.path.exists(RESULTS)
    with open(RESULTS, 'a') as out:
        if new:
            out.write('# Benchmark results\n\nAppended by `make bench` (`python -m benchmarks.run`); newest last.\n')
        out.write(f'\n## {now}\n\n')
        out.write(f'- machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}; Python {info["python"]}; '
                  f'load average at start {info["load"]}\n')
        out.write(f'- data: {args.runs} runs x {len(CONTEXTS)} contexts x {len(TAGS)} tags x {STEPS} steps = '
                  f'{points:,} scalar points (half tensorboardX `simple_value`, half TF2 scalar tensors)'
                  f'{"" if extras else "; scalars only, no images/histograms"}\n')
        out.write(f'- command: `{full["cmd"]}`{" " + " ".join(args.extra) if args.extra else ""}\n\n')
        out.write('| measurement | wall | points/s | peak memory (tree / largest process) |\n')
        out.write('|---|---|---|---|\n')
        out.write(f'| (1) runferry tf_to_aim, {args.runs} runs | {full["wall"]:.1f}s | {_fmt_rate(points / full["wall"])} '
                  f'| {full["peak_tree_mb"]:.0f} MB / {full["peak_process_mb"]:.0f} MB |\n')
        out.write(f'| (1) runferry tf_to_aim, {args.small_runs} runs | {small["wall"]:.1f}s | '
                  f'{_fmt_rate(small_points / small["wall"])} | {small["peak_tree_mb"]:.0f} MB / '
                  f'{small["peak_process_mb"]:.0f} MB |\n')
        if single is not None:
            out.write(f'| (1) same, {args.small_runs} runs, Beam\'s default `--direct_running_mode=in_memory '
                      f'--direct_num_workers=1` | {single["wall"]:.1f}s | {_fmt_rate(small_points / single["wall"])} '
                      f'| {single["peak_tree_mb"]:.0f} MB / {single["peak_process_mb"]:.0f} MB |\n')
        out.write(f'| (2) Aim per-point `_track`, {per_point["runs"]} runs sampled ({per_point["points"]:,} points) '
                  f'| {per_point["seconds"]:.1f}s (extrapolated {points / per_point["rate"]:.0f}s) | '
                  f'{_fmt_rate(per_point["rate"])} | |\n')
        out.write(f'| (3) decode: runferry read_event_stream, {files} files | {decode["ours_s"]:.2f}s | '
                  f'{_fmt_rate(decode["ours_rate"])} | |\n')
        out.write(f'| (3) decode: tensorboard EventFileLoader, same files | {decode["tb_s"]:.2f}s | '
                  f'{_fmt_rate(decode["tb_rate"])} | |\n\n')
        out.write(f'- end-to-end speed-up over the per-point path: **{speedup:.1f}x** (target 10x, goal 20x); '
                  f'decode {decode_ratio:.1f}x the tensorboard loader\n')
        out.write(f'- converted repo read back through the Aim SDK: {check["runs"]} runs, {check["sequences"]} '
                  f'sequences, {check["points"]:,} points, equal to the source\n')


if __name__ == '__main__':
    sys.exit(main())
