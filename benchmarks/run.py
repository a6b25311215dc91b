"""``make bench``: runferry's TensorBoard → Aim backfill against Aim's per-point path, on the same data.

    python -m benchmarks.run [--runs 200] [--small-runs 50] [--sample-runs 6] [--trials 3]
                             [--mlflow-runs 1052] [--mlflow-only]
                             [--runs-list 200,2000] [--bucket-workers 1,2] [--aim-convert-only]
                             [--cache .bench] [--no-record] [-- extra converter flags...]

The logdir (``benchmarks.logdir``) holds scalars, images and histograms; points/s everywhere is all
points (scalar + image + distribution) over the wall time, and the counts are printed by kind.

1. ``python -m pipelines.tf_to_aim --logdir L --repo R`` exactly as the README runs it, in a subprocess:
   wall time, points/s and the peak memory of its process tree (psutil, polled), for ``--runs`` and for
   ``--small-runs`` runs (memory must stay flat as runs grow). The converted repo is then read back
   through the Aim SDK and compared, point by point, with what the writers wrote: scalars by value,
   images by pixels and size, distributions by bucket edges and counts, all by step and wall time.
2. Aim's per-point path on the same decoded records: a fresh repo, one ``Run`` per source run, and per
   point ``run._tracker._track(obj, wall_time, name, step, None, context=...)`` (what ``aim convert``
   calls), where ``obj`` is the float for a scalar and, for images and distributions, the Aim object
   runferry's own converters make (``connectors.aim_sink.OBJECT_CONVERTERS``), as runferry's sink does.
   Values and objects are made before the clock starts: only the writes are timed, by kind. Timed on
   ``--sample-runs`` runs and extrapolated to points/s (it is too slow to time whole).
3. Decode only, on the same sample's files: runferry's ``read_event_stream`` against the ``tensorboard``
   package's ``EventFileLoader`` (which yields protos and decodes nothing further).

Memory with huge runs: (1) also on a logdir of one run of ``--long-points`` points (a long pretraining
log) and one of ``--wide-tags`` tags of one point each (``benchmarks.big_runs``), for their peak memory
beside the small conversion's (it must not grow with a run's size).

(2) and (1) for ``--runs`` are measured as ``--trials`` back-to-back pairs: this machine is a shared VM
whose speed drifts by tens of percent within minutes, and both halves of a pair see the same speed. The
ratio reported is the median pair's, with every pair's listed.

4. MLflow: ``python -m pipelines.mlflow_to_aim`` on a SQLite store of ``--mlflow-runs`` small runs,
   beside mlflow-export-import's ``export-experiments`` (``benchmarks.mlflow_bench``; ``--mlflow-only``
   runs only this step).
5. W&B: runferry's ``.wandb`` reader against W&B's own Python reader (wandb 0.29.0 in its own venv) on the
   files of ``--wandb-reader-runs`` runs, in ``--trials`` interleaved pairs; ``python -m pipelines.wandb_to_aim``
   on directories of ``--wandb-runs`` runs (10 and 1,000), its rate and its peak memory as the runs grow
   (``benchmarks.wandb_bench``; ``--wandb-only``).
6. ``aim convert tensorboard`` itself, from its own pinned venv, against ``tf_to_aim`` on logdirs of
   ``--runs-list`` runs (200 and 2,000), in ``--trials`` interleaved pairs; runferry's fixed cost apart
   from its rate; both repos counted through Aim's SDK; the bucket repo (``--repo s3://`` on moto) with
   ``--bucket-workers`` worker processes (``benchmarks.aim_convert_bench``; ``--aim-convert-only``).

Results are printed and appended to ``benchmarks/RESULTS.md`` with the machine and date.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import os
import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.aim_convert_bench import add_arguments as add_aim_convert_arguments
from benchmarks.aim_convert_bench import run_step as run_aim_convert_step
from benchmarks.logdir import (CONTEXTS, HISTOGRAM_BINS, HISTOGRAM_TAG, HISTOGRAM_VALUES, IMAGE_SIZE, IMAGE_TAG,
                               KINDS, OBJECT_EVERY, OBJECT_STEPS, STEPS, TAGS, ensure_logdir, run_names, run_salt,
                               subset_logdir)
from benchmarks.measure import TreeMemory, empty_trash, machine, set_aside
from benchmarks.wandb_bench import READER_RUNS

__all__ = ['main', 'set_aside', 'empty_trash', 'run_tf_to_aim', 'per_point_rate', 'decode_rates', 'verify_repo',
           'machine']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'RESULTS.md')
# runferry's kind -> what this benchmark calls it
KIND_LABELS = {'metric': 'scalar', 'image': 'image', 'distribution': 'distribution'}


def run_tf_to_aim(logdir: str, repo: str, extra: List[str]) -> Dict[str, float]:
    """The README's command in a subprocess: wall time and peak memory of its process tree."""
    set_aside(repo)
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
    written, by_kind = 0, {}
    in_kinds = False
    for line in output.splitlines():
        if line.strip().startswith('points written'):
            written = int(line.split()[-1].replace(',', ''))
        # the report's "points by kind" table: kind, read, written, skipped
        in_kinds = line.strip().startswith('points by kind') or (in_kinds and bool(line.strip()))
        row = re.match(r'\s+(\S+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)$', line) if in_kinds else None
        if row:
            by_kind[row.group(1)] = int(row.group(3).replace(',', ''))
    return {'wall': wall, 'points_written': written, 'written_by_kind': by_kind,
            'peak_tree_mb': memory.peak_total / 2 ** 20, 'peak_process_mb': memory.peak_single / 2 ** 20,
            'cmd': ' '.join(['python'] + cmd[1:])}


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
    from runmodel import Series

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


def per_point_rate(files: List[Tuple[str, str, str]], repo_path: str) -> Dict[str, Any]:
    """Aim's per-point write path on the sample's decoded records, in a fresh repo at ``repo_path``.

    Every point goes through ``run._tracker._track(obj, wall_time, name, step, None, context=...)``: a
    float for a scalar, runferry's own Aim object for an image or a distribution (the objects runferry's
    sink tracks, made the way ``connectors.aim_sequences`` makes them). Floats and objects are
    made before the clock starts; each run's points are written kind by kind and timed by kind."""
    from aim.sdk.run import Run

    from connectors.aim_objects import OBJECT_CONVERTERS
    from connectors.aim_sink import open_repo
    from runmodel import METRIC

    decoded, _ = _decode(files)
    records: Dict[str, Dict[str, List[tuple]]] = {}  # run -> kind -> [(obj, wall_time, name, step, context)]
    for run, _context, series in decoded:  # decoded and converted up front: only the writes are timed
        if series.kind == METRIC:
            objects = [float(v) for v in series.values]
        else:
            convert = OBJECT_CONVERTERS[series.kind]
            objects = [convert(payload) for payload in series.values]
            if any(isinstance(o, list) for o in objects):  # as _write_objects: one type per sequence
                objects = [o if isinstance(o, list) else [o] for o in objects]
        records.setdefault(run, {}).setdefault(series.kind, []).extend(
            (obj, w, series.name, int(s), series.context)
            for s, w, obj in zip(series.steps, series.wall_times, objects))
    points = {kind: sum(len(by_kind.get(kind, ())) for by_kind in records.values()) for kind in KINDS}
    kind_seconds = dict.fromkeys(KINDS, 0.0)
    set_aside(repo_path)
    repo = open_repo(repo_path)
    started = time.perf_counter()
    for run_name, by_kind in records.items():
        run = Run(repo=repo, system_tracking_interval=None, capture_terminal_logs=False, experiment='bench')
        run.name = run_name
        track = run._tracker._track
        for kind, rows in by_kind.items():
            kind_started = time.perf_counter()
            for obj, wall_time, name, step, context in rows:
                track(obj, wall_time, name, step, None, context=context)
            kind_seconds[kind] += time.perf_counter() - kind_started
        run.close()
    seconds = time.perf_counter() - started
    total = sum(points.values())
    return {'points': total, 'by_kind': points, 'kind_seconds': kind_seconds, 'runs': len(records),
            'seconds': seconds, 'rate': total / seconds,
            'kind_rates': {k: points[k] / kind_seconds[k] for k in KINDS if kind_seconds[k] > 0}}


_OBJECT_SEQUENCES = (  # kind, Aim dtypes, Run getter, the tag written
    ('image', ('aim.image', 'list(aim.image)'), 'get_image_sequence', IMAGE_TAG),
    ('distribution', ('aim.distribution',), 'get_distribution_sequence', HISTOGRAM_TAG),
)


def _object_differs(kind: str, obj, index: int, context: str, step: int) -> Optional[str]:
    """Why the object read back at (run, context, step) is not what the writer wrote, or None."""
    import numpy as np

    from benchmarks.logdir import histogram_at, image_at
    from connectors.aim_objects import distribution_edges

    if kind == 'image':
        if isinstance(obj, list):
            return f'a list of {len(obj)} images'
        height, width = IMAGE_SIZE
        if (obj.width, obj.height, obj.format) != (width, height, 'png'):
            return f'image {obj.width}x{obj.height} {obj.format}'
        if not np.array_equal(np.asarray(obj.to_pil_image()), image_at(index, context, step)):
            return 'pixels'
        return None
    edges, counts = histogram_at(index, context, step)
    if len(obj.weights) != HISTOGRAM_BINS:
        return f'{len(obj.weights)} buckets'
    if obj.weights.tolist() != counts or distribution_edges(obj).tolist() != edges:
        return 'bucket counts or edges'
    return None


def verify_repo(repo_path: str, runs: int) -> Dict[str, Any]:
    """Read the converted repo through the Aim SDK: every run, sequence and point the writers wrote, with
    the same steps and wall times; scalars with the same values, images with the same size and pixels,
    distributions with the same bucket edges and counts. Returns counts by kind; raises on any difference."""
    from aim import Repo

    from benchmarks.logdir import wall_time_at
    from samples.tensorboard_logs import value_at

    repo = Repo.from_path(repo_path)
    seen_runs, mismatches = set(), []
    sequences, points = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
    for run in repo.iter_runs():
        index = int(run.name.split('_')[1])
        seen_runs.add(run.name)
        for metric in run.metrics():
            context = metric.context.to_dict().get('entry')
            steps, (values, _, times) = metric.data.items_list()
            salt = run_salt(index, context)
            sequences['metric'] += 1
            points['metric'] += len(steps)
            if list(steps) != list(range(STEPS)):
                mismatches.append((run.name, context, metric.name, 'steps'))
                continue
            for step, value, wall_time in zip(steps, values, times):
                if value != value_at(metric.name, step, salt) or abs(wall_time - wall_time_at(index, step)) > 1e-3:
                    mismatches.append((run.name, context, metric.name, step))
                    break
        for kind, dtypes, getter, tag in _OBJECT_SEQUENCES:
            for name, context, _ in run.iter_sequence_info_by_type(dtypes):
                entry = context.to_dict().get('entry')
                steps, (objects, _, times) = getattr(run, getter)(name, context).data.items_list()
                sequences[kind] += 1
                points[kind] += len(steps)
                if name != tag or entry not in CONTEXTS or list(steps) != list(OBJECT_STEPS):
                    mismatches.append((run.name, entry, name, 'name, context or steps'))
                    continue
                for step, obj, wall_time in zip(steps, objects, times):
                    why = 'wall time' if abs(wall_time - wall_time_at(index, step)) > 1e-3 else \
                        _object_differs(kind, obj, index, entry, step)
                    if why:
                        mismatches.append((run.name, entry, name, step, why))
                        break
    expected_runs = set(run_names(runs))
    expected_sequences = {'metric': runs * len(CONTEXTS) * len(TAGS), 'image': runs * len(CONTEXTS),
                          'distribution': runs * len(CONTEXTS)}
    if seen_runs != expected_runs or sequences != expected_sequences or mismatches:
        raise SystemExit(f'converted repo differs from the source: runs {len(seen_runs)}/{runs}, '
                         f'sequences {sequences} (expected {expected_sequences}), '
                         f'first mismatches {mismatches[:5]}')
    return {'runs': len(seen_runs), 'sequences': sequences, 'points': points}


def _fmt_rate(x: float) -> str:
    return f'{x:,.0f}'


def _by_kind(counts: Dict[str, int]) -> str:
    """``800,000 scalar + 8,000 image + 8,000 distribution``"""
    return ' + '.join(f'{counts.get(kind, 0):,} {KIND_LABELS[kind]}' for kind in KINDS)


def _data_line(runs: int, points: Dict[str, int]) -> str:
    height, width = IMAGE_SIZE
    return (f'{runs} runs x {len(CONTEXTS)} contexts: {len(TAGS)} scalar tags x {STEPS} steps, and every '
            f'{OBJECT_EVERY} steps one {height}x{width} RGB PNG image and one histogram ({HISTOGRAM_BINS} buckets '
            f'of {HISTOGRAM_VALUES:,} values) = {sum(points.values()):,} points ({_by_kind(points)})')


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.run', description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=200)
    parser.add_argument('--small-runs', type=int, default=50)
    parser.add_argument('--sample-runs', type=int, default=6, help='runs timed on the per-point path')
    parser.add_argument('--trials', type=int, default=3,
                        help='back-to-back pairs of (2) then (1); the ratio is the median pair\'s')
    parser.add_argument('--cache', default=os.path.join(ROOT, '.bench'))
    parser.add_argument('--no-record', action='store_true', help='do not append to benchmarks/RESULTS.md')
    parser.add_argument('--long-points', type=int, default=10_000_000,
                        help='points of the one-run "long" logdir measured for memory (0: skip)')
    parser.add_argument('--wide-tags', type=int, default=200_000,
                        help='one-point tags of the one-run "wide" logdir measured for memory (0: skip)')
    parser.add_argument('--mlflow-runs', type=int, default=1052,
                        help='runs of the MLflow store converted by mlflow_to_aim (benchmarks.mlflow_bench; 0: skip)')
    parser.add_argument('--mlflow-only', action='store_true', help='only the MLflow step')
    parser.add_argument('--wandb-runs', default='10,1000',
                        help='run counts of the W&B directories converted by wandb_to_aim (benchmarks.wandb_bench; '
                             'empty: skip)')
    parser.add_argument('--wandb-reader-runs', type=int, default=READER_RUNS,
                        help='runs whose .wandb files runferry\'s reader and W&B\'s own read side by side (0: skip)')
    parser.add_argument('--wandb-only', action='store_true', help='only the W&B step')
    add_aim_convert_arguments(parser)  # --runs-list, --bucket-workers
    parser.add_argument('--aim-convert-only', action='store_true', help='only the comparison with aim convert')
    parser.add_argument('extra', nargs='*', help='extra flags for tf_to_aim and mlflow_to_aim (after --)')
    args = parser.parse_args(argv)
    if args.aim_convert_only and not args.runs_list:
        parser.error('--aim-convert-only needs --runs-list with at least one run count, e.g. 200,2000')
    os.makedirs(args.cache, exist_ok=True)
    try:
        if args.aim_convert_only:
            return _aim_convert_step(args)
        status = 0 if (args.mlflow_only or args.wandb_only) else _measure(args)
        if args.mlflow_runs and status == 0 and not args.wandb_only:
            from benchmarks.mlflow_bench import measure_mlflow

            measure_mlflow(args.cache, args.mlflow_runs, args.trials, args.extra, record=not args.no_record)
        wandb_sizes = [int(size) for size in args.wandb_runs.split(',') if size.strip()]
        if wandb_sizes and status == 0 and not args.mlflow_only:
            from benchmarks.wandb_bench import measure_wandb

            measure_wandb(args.cache, wandb_sizes, args.extra, record=not args.no_record, trials=args.trials,
                          reader_runs=args.wandb_reader_runs)
        if args.runs_list and status == 0 and not (args.mlflow_only or args.wandb_only):
            status = _aim_convert_step(args)
        return status
    finally:
        empty_trash(args.cache)  # the repos set aside (see set_aside), once nothing is timed any more


def _aim_convert_step(args: argparse.Namespace) -> int:
    """6. runferry against ``aim convert tensorboard`` itself (``benchmarks.aim_convert_bench``)."""
    return run_aim_convert_step(args.cache, args.runs_list, args.trials, args.bucket_workers, args.extra,
                                record_results=not args.no_record)


def _measure(args: argparse.Namespace) -> int:
    info = machine()
    print(f'machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}, load {info["load"]}', flush=True)

    started = time.perf_counter()
    logdir, by_kind = ensure_logdir(args.cache, args.runs)
    small_logdir, small_by_kind = subset_logdir(args.cache, logdir, args.small_runs)
    points, small_points = sum(by_kind.values()), sum(small_by_kind.values())
    print(f'logdir: {logdir} ({_data_line(args.runs, by_kind)}; ready in {time.perf_counter() - started:.1f}s)',
          flush=True)
    print('note: scalars are half tensorboardX simple_value, half TF2 scalar tensors; images and histograms are '
          'written by tensorboardX (add_image, add_histogram) in a second event file per context; '
          'points/s counts all kinds', flush=True)

    repo = os.path.join(args.cache, 'aim-full')
    small_repo = os.path.join(args.cache, 'aim-small')
    files = _sample_files(logdir, args.sample_runs)
    # (2) and (1) measured back to back, ``--trials`` times: this machine's speed drifts (a shared VM),
    # and a pair measured together sees the same speed; the result is the median pair's ratio.
    pairs = []
    for trial in range(1, args.trials + 1):
        per_point = per_point_rate(files, os.path.join(args.cache, 'aim-per-point'))
        full = run_tf_to_aim(logdir, repo, args.extra)
        pairs.append((points / full['wall'] / per_point['rate'], full, per_point))
        print(f'trial {trial}: (2) per-point {_fmt_rate(per_point["rate"])} points/s, (1) tf_to_aim '
              f'{full["wall"]:.1f}s wall -> {pairs[-1][0]:.1f}x', flush=True)
    speedup, full, per_point = sorted(pairs, key=lambda pair: pair[0])[len(pairs) // 2]
    full = dict(full, peak_tree_mb=max(p[1]['peak_tree_mb'] for p in pairs),
                peak_process_mb=max(p[1]['peak_process_mb'] for p in pairs))
    print(f'(1) tf_to_aim, {args.runs} runs (median pair): {full["wall"]:.1f}s wall, '
          f'{_fmt_rate(points / full["wall"])} points/s, peak memory {full["peak_tree_mb"]:.0f} MB '
          f'(process tree), {full["peak_process_mb"]:.0f} MB (largest process), over all trials', flush=True)
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
    big = big_runs(args)
    check = verify_repo(repo, args.runs)
    reported = {kind: full['written_by_kind'].get(kind, 0) for kind in KINDS}
    if check['points'] != by_kind or reported != by_kind or full['points_written'] != points:
        raise SystemExit(f'point count differs: source {_by_kind(by_kind)}; tf_to_aim reported '
                         f'{full["points_written"]:,} ({_by_kind(reported)}); read back {_by_kind(check["points"])}')
    print(f'    read back through the Aim SDK: {check["runs"]} runs, {sum(check["sequences"].values())} sequences '
          f'({_by_kind(check["sequences"])}), {sum(check["points"].values()):,} points = source '
          f'(steps and wall times; scalar values, image sizes and pixels, histogram edges and counts)', flush=True)

    kind_rates = ', '.join(f'{KIND_LABELS[k]} {_fmt_rate(per_point["by_kind"][k] / per_point["kind_seconds"][k])}/s '
                           f'({per_point["kind_seconds"][k]:.1f}s)' for k in KINDS if per_point['kind_seconds'][k])
    print(f'(2) Aim per-point path (run._tracker._track), median pair, sample of {per_point["runs"]} runs / '
          f'{per_point["points"]:,} points ({_by_kind(per_point["by_kind"])}): {per_point["seconds"]:.1f}s -> '
          f'{_fmt_rate(per_point["rate"])} points/s; by kind {kind_rates}; '
          f'extrapolated to {points:,} points: {points / per_point["rate"]:.0f}s', flush=True)
    decode = decode_rates(files)
    print(f'(3) decode only, same {len(files)} files: runferry {_fmt_rate(decode["ours_rate"])} points/s; '
          f'tensorboard EventFileLoader {_fmt_rate(decode["tb_rate"])} values/s '
          f'(protos only, no value decoding)', flush=True)
    decode_ratio = decode['ours_rate'] / decode['tb_rate']
    print(f'ratios: end-to-end {speedup:.1f}x the per-point path (median of {len(pairs)} pairs: '
          f'{", ".join(f"{p[0]:.1f}x" for p in pairs)}; target 10x, goal 20x); '
          f'decode {decode_ratio:.1f}x the tensorboard loader', flush=True)

    if not args.no_record:
        record(info, args, by_kind, small_points, full, small, single, check, per_point, decode, speedup,
               decode_ratio, len(files), [p[0] for p in pairs], big)
        print(f'appended to {os.path.relpath(RESULTS, ROOT)}')
    return 0


def big_runs(args: argparse.Namespace) -> List[Tuple[str, int, Dict[str, Any]]]:
    """One huge run each (``benchmarks.big_runs``): its conversion's wall time and peak memory, to set
    beside a small conversion's (memory must be bounded by a chunk, not by a run)."""
    from benchmarks.big_runs import ensure_long_run, ensure_wide_run

    measured = []
    for label, make, size in (('one run, {:,} points in 4 tags', ensure_long_run, args.long_points),
                              ('one run, {:,} tags of one point', ensure_wide_run, args.wide_tags)):
        if not size:
            continue
        logdir, points = make(args.cache, size)
        result = run_tf_to_aim(logdir, os.path.join(args.cache, 'aim-big'), args.extra)
        if result['points_written'] != points:
            raise SystemExit(f'{logdir}: {points:,} points, tf_to_aim wrote {result["points_written"]:,}')
        measured.append((label.format(size), points, result))
        print(f'    tf_to_aim, {label.format(size)}: {result["wall"]:.1f}s wall, '
              f'{_fmt_rate(points / result["wall"])} points/s, peak memory {result["peak_process_mb"]:.0f} MB',
              flush=True)
    return measured


def record(info, args, by_kind, small_points, full, small, single, check, per_point, decode, speedup,
           decode_ratio, files, ratios, big=()) -> None:
    points = sum(by_kind.values())
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    new = not os.path.exists(RESULTS)
    with open(RESULTS, 'a') as out:
        if new:
            out.write('# Benchmark results\n\nAppended by `make bench` (`python -m benchmarks.run`); newest last.\n')
        out.write(f'\n## {now}\n\n')
        out.write(f'- machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}; Python {info["python"]}; '
                  f'load average at start {info["load"]}\n')
        out.write(f'- data: {_data_line(args.runs, by_kind)}; scalars half tensorboardX `simple_value`, half TF2 '
                  f'scalar tensors; images and histograms by tensorboardX `add_image`/`add_histogram`. '
                  f'points/s counts all kinds\n')
        out.write(f'- command: `{full["cmd"]}`{" " + " ".join(args.extra) if args.extra else ""}\n\n')
        out.write('| measurement | wall | points/s | peak memory (tree / largest process) |\n')
        out.write('|---|---|---|---|\n')
        out.write(f'| (1) runferry tf_to_aim, {args.runs} runs (median pair) | {full["wall"]:.1f}s | '
                  f'{_fmt_rate(points / full["wall"])} '
                  f'| {full["peak_tree_mb"]:.0f} MB / {full["peak_process_mb"]:.0f} MB |\n')
        out.write(f'| (1) runferry tf_to_aim, {args.small_runs} runs | {small["wall"]:.1f}s | '
                  f'{_fmt_rate(small_points / small["wall"])} | {small["peak_tree_mb"]:.0f} MB / '
                  f'{small["peak_process_mb"]:.0f} MB |\n')
        for label, big_points, result in big:
            out.write(f'| (1) runferry tf_to_aim, {label} | {result["wall"]:.1f}s | '
                      f'{_fmt_rate(big_points / result["wall"])} | {result["peak_tree_mb"]:.0f} MB / '
                      f'{result["peak_process_mb"]:.0f} MB |\n')
        if single is not None:
            out.write(f'| (1) same, {args.small_runs} runs, Beam\'s default `--direct_running_mode=in_memory '
                      f'--direct_num_workers=1` | {single["wall"]:.1f}s | {_fmt_rate(small_points / single["wall"])} '
                      f'| {single["peak_tree_mb"]:.0f} MB / {single["peak_process_mb"]:.0f} MB |\n')
        out.write(f'| (2) Aim per-point `_track` (median pair), {per_point["runs"]} runs sampled '
                  f'({per_point["points"]:,} points: '
                  f'{_by_kind(per_point["by_kind"])}) | {per_point["seconds"]:.1f}s (extrapolated '
                  f'{points / per_point["rate"]:.0f}s) | {_fmt_rate(per_point["rate"])} | |\n')
        for kind in KINDS:
            if per_point['kind_seconds'][kind]:
                out.write(f'| (2) of which {KIND_LABELS[kind]} points ({per_point["by_kind"][kind]:,}) | '
                          f'{per_point["kind_seconds"][kind]:.1f}s | '
                          f'{_fmt_rate(per_point["by_kind"][kind] / per_point["kind_seconds"][kind])} | |\n')
        out.write(f'| (3) decode: runferry read_event_stream, {files} files | {decode["ours_s"]:.2f}s | '
                  f'{_fmt_rate(decode["ours_rate"])} | |\n')
        out.write(f'| (3) decode: tensorboard EventFileLoader, same files | {decode["tb_s"]:.2f}s | '
                  f'{_fmt_rate(decode["tb_rate"])} | |\n\n')
        out.write(f'- end-to-end speed-up over the per-point path: **{speedup:.1f}x**, the median of {len(ratios)} '
                  f'pairs measured back to back ({", ".join(f"{r:.1f}x" for r in ratios)}; target 10x, goal 20x); '
                  f'decode {decode_ratio:.1f}x the tensorboard loader\n')
        out.write(f'- converted repo read back through the Aim SDK: {check["runs"]} runs, '
                  f'{sum(check["sequences"].values())} sequences, {sum(check["points"].values()):,} points '
                  f'({_by_kind(check["points"])}), equal to the source (steps, wall times, scalar values, image '
                  f'sizes and pixels, histogram edges and counts)\n')


if __name__ == '__main__':
    sys.exit(main())
