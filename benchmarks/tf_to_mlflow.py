"""``make bench``, MLflow part: ``tf_to_mlflow`` against the straightforward script, on the same logdir.

    python -m benchmarks.tf_to_mlflow [--runs 40] [--steps 3000] [--trials 2] [--cache .bench] [--no-record]

The straightforward script (``baseline``, run as ``python -m benchmarks.tf_to_mlflow --baseline LOGDIR
URI``) is what a user writes today: per run directory, TensorBoard's ``EventAccumulator`` (every scalar
kept) over the run's own directory and each context directory, then ``MlflowClient.log_batch`` with
1,000 metrics a call into a run it creates. It writes scalars only, so the logdir holds scalars only
(tensorboardX ``add_scalar``: ``train/`` with 3 tags of ``--steps`` steps and ``validate/`` with one of
``--steps / 5``, per run), and both write the same points.

Measured, each as a subprocess from start to exit, into a fresh store each time: wall time, points/s
and the peak memory of the process tree (``benchmarks.run.TreeMemory``), into a SQLite store and into an
``mlflow server`` (SQLite behind it), ``--trials`` times back to back (pairs; the median pair's ratio is
reported, as ``benchmarks.run`` does: this machine's speed drifts). tf_to_mlflow also once on a logdir
of a quarter of the runs, for memory (it must stay flat as runs grow). Results are printed and
appended to ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'RESULTS.md')

__all__ = ['main', 'baseline', 'write_logdir']


# ----------------------------------------------------------------------------------------------- the data

def write_logdir(root: str, runs: int, steps: int) -> int:
    """The scalar logdir (cached by its marker); returns its number of points."""
    from samples.tensorboard_logs import write_tbx

    points = runs * (3 * steps + steps // 5)
    marker = os.path.join(root, f'.complete-{runs}-{steps}')
    if os.path.exists(marker):
        return points
    shutil.rmtree(root, ignore_errors=True)
    for i in range(runs):
        write_tbx(os.path.join(root, f'run_{i:03d}', 'train'), ('loss', 'acc', 'lr'), steps, salt=i,
                  start_time=1_700_000_000.0 + 100_000 * i)
        write_tbx(os.path.join(root, f'run_{i:03d}', 'validate'), ('loss',), steps // 5, salt=i,
                  start_time=1_700_000_000.0 + 100_000 * i)
    open(marker, 'w').close()
    return points


# ------------------------------------------------------------------------------------ the plain script

def baseline(logdir: str, tracking_uri: str) -> int:
    """The straightforward import: EventAccumulator per directory, log_batch of 1,000 metrics a call."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(os.path.basename(logdir.rstrip('/')),
                                          artifact_location=os.path.abspath('baseline-artifacts'))
    written = 0
    for run in sorted(os.listdir(logdir)):
        run_dir = os.path.join(logdir, run)
        if not os.path.isdir(run_dir):
            continue
        metrics: List[Metric] = []
        for directory, _, files in sorted(os.walk(run_dir)):
            if not any('tfevents' in name for name in files):
                continue
            context = os.path.relpath(directory, run_dir)
            accumulator = EventAccumulator(directory, size_guidance={'scalars': 0})
            accumulator.Reload()
            for tag in accumulator.Tags()['scalars']:
                key = tag if context == '.' else f'{context}/{tag}'
                metrics += [Metric(key, e.value, int(e.wall_time * 1000), e.step) for e in accumulator.Scalars(tag)]
        times = [m.timestamp for m in metrics]
        created = client.create_run(experiment, start_time=min(times), run_name=run)
        for start in range(0, len(metrics), 1000):
            client.log_batch(created.info.run_id, metrics=metrics[start:start + 1000], synchronous=True)
        client.set_terminated(created.info.run_id, 'FINISHED', end_time=max(times))
        written += len(metrics)
    print(f'points written {written}')
    return 0


# ---------------------------------------------------------------------------------------------- measuring

def _measure(cmd: List[str], cwd: str) -> Dict[str, float]:
    from benchmarks.run import TreeMemory

    env = {**os.environ, 'PYTHONPATH': ROOT}
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeMemory(process.pid) as memory:
        output, _ = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f'{" ".join(cmd[:3])} failed ({process.returncode}):\n{output[-3000:]}')
    return {'wall': wall, 'peak_tree_mb': memory.peak_total / 2 ** 20}


def _fresh(directory: str) -> str:
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    return directory


def _tf_to_mlflow(logdir: str, uri: str, scratch: str) -> Dict[str, float]:
    return _measure([sys.executable, '-m', 'pipelines.tf_to_mlflow', '--logdir', logdir, '--tracking-uri', uri,
                     '--artifact-location', os.path.join(scratch, 'artifacts'),
                     '--skipped', os.path.join(scratch, 'skipped.jsonl')], scratch)


def _baseline(logdir: str, uri: str, scratch: str) -> Dict[str, float]:
    return _measure([sys.executable, '-m', 'benchmarks.tf_to_mlflow', '--baseline', logdir, uri], scratch)


def _pair(logdir: str, scratch: str, store: str) -> Dict[str, Dict[str, float]]:
    """tf_to_mlflow and the baseline, back to back, each into a fresh store of the kind ``store``."""
    from tests.servers import mlflow_server

    results = {}
    for label, measure in (('runferry', _tf_to_mlflow), ('baseline', _baseline)):
        work = _fresh(os.path.join(scratch, f'{store}-{label}'))
        if store == 'sqlite':
            results[label] = measure(logdir, f'sqlite:///{work}/mlflow.db', work)
        else:
            with mlflow_server(_fresh(os.path.join(work, 'server'))) as server:
                results[label] = measure(logdir, server.url, work)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.tf_to_mlflow', description=__doc__.split('\n')[0])
    parser.add_argument('--baseline', nargs=2, metavar=('LOGDIR', 'URI'), help='run the plain script only')
    parser.add_argument('--runs', type=int, default=40)
    parser.add_argument('--steps', type=int, default=3000)
    parser.add_argument('--trials', type=int, default=2)
    parser.add_argument('--stores', default='sqlite,http')
    parser.add_argument('--cache', default=os.path.join(ROOT, '.bench'))
    parser.add_argument('--no-record', dest='record', action='store_false')
    args = parser.parse_args(argv)
    if args.baseline:
        return baseline(*args.baseline)

    logdir = os.path.join(args.cache, 'mlflow-logdir')
    small_logdir = os.path.join(args.cache, 'mlflow-logdir-small')
    points = write_logdir(logdir, args.runs, args.steps)
    small_points = write_logdir(small_logdir, max(1, args.runs // 4), args.steps)
    scratch = os.path.join(args.cache, 'mlflow-work')
    rows = []
    for store in args.stores.split(','):
        pairs = [_pair(logdir, scratch, store) for _ in range(args.trials)]
        ratios = sorted(p['baseline']['wall'] / p['runferry']['wall'] for p in pairs)
        median = sorted(pairs, key=lambda p: p['baseline']['wall'] / p['runferry']['wall'])[len(pairs) // 2]
        rows.append((store, median, ratios))
        print(f'{store}: tf_to_mlflow {median["runferry"]["wall"]:.1f}s ({points / median["runferry"]["wall"]:,.0f} '
              f'points/s, {median["runferry"]["peak_tree_mb"]:.0f} MB), baseline {median["baseline"]["wall"]:.1f}s '
              f'({points / median["baseline"]["wall"]:,.0f} points/s, {median["baseline"]["peak_tree_mb"]:.0f} MB): '
              f'{statistics.median(ratios):.1f}x ({", ".join(f"{r:.1f}x" for r in ratios)})')
    small = _tf_to_mlflow(small_logdir, f'sqlite:///{_fresh(os.path.join(scratch, "small"))}/mlflow.db',
                          os.path.join(scratch, 'small'))
    print(f'tf_to_mlflow on {max(1, args.runs // 4)} runs (SQLite): {small["wall"]:.1f}s, '
          f'{small["peak_tree_mb"]:.0f} MB')
    if args.record:
        _record(args, points, small_points, rows, small)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _record(args, points: int, small_points: int, rows, small) -> None:
    from benchmarks.run import machine

    info = machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    with open(RESULTS, 'a') as out:
        out.write(f'\n## {now}: tf_to_mlflow against EventAccumulator + log_batch\n\n')
        out.write(f'- machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}; load at start {info["load"]}\n')
        out.write(f'- data: {args.runs} runs, {points:,} scalar points (train/ 3 tags x {args.steps} steps, '
                  f'validate/ 1 tag x {args.steps // 5}); `python -m benchmarks.tf_to_mlflow`\n\n')
        out.write('| store | tf_to_mlflow | baseline | speed-up (median pair; all pairs) | peak memory (ours / baseline) |\n')
        out.write('|---|---|---|---|---|\n')
        for store, median, ratios in rows:
            ours, base = median['runferry'], median['baseline']
            out.write(f'| {store} | {ours["wall"]:.1f}s, {points / ours["wall"]:,.0f} points/s | {base["wall"]:.1f}s, '
                      f'{points / base["wall"]:,.0f} points/s | **{base["wall"] / ours["wall"]:.1f}x**; '
                      f'{", ".join(f"{r:.1f}x" for r in ratios)} | {ours["peak_tree_mb"]:.0f} MB / '
                      f'{base["peak_tree_mb"]:.0f} MB |\n')
        out.write(f'| sqlite, {max(1, args.runs // 4)} runs ({small_points:,} points) | {small["wall"]:.1f}s | | | '
                  f'{small["peak_tree_mb"]:.0f} MB |\n')


if __name__ == '__main__':
    sys.exit(main())
