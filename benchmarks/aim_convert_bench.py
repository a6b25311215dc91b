"""runferry's ``tf_to_aim`` against ``aim convert tensorboard`` itself, as users would compare them.

    python -m benchmarks.aim_convert_bench [--runs-list 200,2000] [--trials 3] [--bucket-workers 1,2]
                                           [--cache .bench] [--no-record]

(also ``python -m benchmarks.run --aim-convert-only``, and a step of ``make bench``.)

* ``aim convert`` runs from its own venv (``benchmarks.aim_convert_venv``: aim 3.29.1, tensorflow-cpu
  2.21.0, tensorboard 2.21.0, every package pinned), as its users run it: ``aim init --repo R`` then
  ``aim convert --repo R tensorboard --logdir L``, both timed, one process tree.
* runferry runs as the README says: ``python -m pipelines.tf_to_aim --logdir L --repo R``.
* On each logdir of ``--runs-list`` (``benchmarks.convert_logdir``: 200 runs of 2,000 scalar points,
  2,000 runs of 400), both run as subprocesses into fresh repos, in ``--trials`` interleaved pairs
  (runferry, aim convert, runferry, ...): this shared machine's speed drifts, and both halves of a pair
  see the same. Reported: the ratio of the median walls, every pair's ratio, each side's peak memory
  of its process tree (the largest over the trials).
* runferry's fixed cost (its wall on a one-run logdir, median of ``--trials``) apart from its rate:
  points/s and runs/s over the wall net of the fixed cost.
* Both repos are then read back through Aim's SDK (``benchmarks.repo_counts``) and compared with what
  the writers wrote: runferry's must hold every point; what ``aim convert``'s lacks is printed and
  recorded (it converts only the ``scalars`` and ``images`` plugins: the histograms are dropped). Its
  repo is reindexed first (``aim storage reindex``, not timed): ``aim convert`` leaves its runs out of
  the index, so the SDK does not list them until then.
* The bucket repo (``benchmarks.bucket_bench``): runferry into ``--repo s3://…`` on a local moto
  server, with one and with two worker processes, or one "not available" line.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

from benchmarks.aim_convert_venv import ensure_venv
from benchmarks.bucket_bench import measure_bucket
from benchmarks.convert_logdir import ensure_convert_logdir
from benchmarks.measure import empty_trash, machine, set_aside
from benchmarks.repo_counts import RepoCounts, compare_counts, count_repo
from benchmarks.timed_run import Timed, run_timed, runferry_command

__all__ = ['aim_convert_command', 'SizeResult', 'measure_size', 'measure_fixed_cost', 'summary_lines', 'record',
           'add_arguments', 'run_step', 'main']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'RESULTS.md')
AIM_CONVERT_DONE = 'TensorBoard logs conversion complete!'
TARGET, GOAL = 10.0, 20.0


def aim_convert_command(aim: str, logdir: str, repo: str) -> List[str]:
    """``aim init`` then ``aim convert tensorboard`` as one process tree (``aim convert`` needs an
    initialized repo directory); the paths are arguments of ``sh``, never spliced into its script."""
    script = 'mkdir -p "$2" && "$1" init --repo "$2" && "$1" convert --repo "$2" tensorboard --logdir "$3"'
    return ['sh', '-c', script, 'sh', aim, repo, logdir]


def _runferry(logdir: str, repo: str, extra: List[str]) -> Timed:
    set_aside(repo)
    skipped = repo + '.skipped.jsonl'
    if os.path.exists(skipped):
        os.remove(skipped)
    return run_timed(runferry_command(logdir, repo, extra))


def _aim_convert(aim: str, logdir: str, repo: str) -> Timed:
    set_aside(repo)
    timed = run_timed(aim_convert_command(aim, logdir, repo))
    if AIM_CONVERT_DONE not in timed.output:  # it exits 0 when it cannot import TensorFlow
        raise SystemExit(f'aim convert did not complete:\n{timed.output[-3000:]}')
    return timed


def measure_fixed_cost(cache: str, trials: int, extra: List[str]) -> List[Timed]:
    """runferry on a one-run logdir, ``trials`` times: start-up and teardown, nearly no data."""
    logdir, _, _ = ensure_convert_logdir(cache, 1)
    return [_runferry(logdir, os.path.join(cache, 'convert-bench-rf-1'), extra) for _ in range(trials)]


@dataclasses.dataclass
class SizeResult:
    runs: int
    source: Dict[str, int]  # {kind: points} the writers wrote
    runferry: List[Timed]
    aim_convert: List[Timed]
    runferry_counts: RepoCounts
    aim_convert_counts: RepoCounts

    @property
    def points(self) -> int:
        return sum(self.source.values())

    @property
    def pair_ratios(self) -> List[float]:
        return [a.wall / r.wall for r, a in zip(self.runferry, self.aim_convert)]

    @property
    def ratio(self) -> float:
        """The ratio of the median walls."""
        return statistics.median(a.wall for a in self.aim_convert) / statistics.median(r.wall for r in self.runferry)


def _reindex(aim: str, repo: str) -> None:
    subprocess.run([aim, 'storage', '--repo', repo, 'reindex', '-y'], check=True, capture_output=True)


def measure_size(cache: str, aim: str, runs: int, trials: int, extra: List[str], log=print) -> SizeResult:
    logdir, shape, source = ensure_convert_logdir(cache, runs)
    ours, theirs = os.path.join(cache, f'convert-bench-rf-{runs}'), os.path.join(cache, f'convert-bench-ac-{runs}')
    runferry, aim_convert = [], []
    for trial in range(1, trials + 1):
        runferry.append(_runferry(logdir, ours, extra))
        aim_convert.append(_aim_convert(aim, logdir, theirs))
        log(f'  {runs} runs, pair {trial}: runferry {runferry[-1].wall:.1f}s ({runferry[-1].peak_mb:.0f} MB), '
            f'aim convert {aim_convert[-1].wall:.1f}s ({aim_convert[-1].peak_mb:.0f} MB) -> '
            f'{aim_convert[-1].wall / runferry[-1].wall:.1f}x; load {_load()}', flush=True)
    _reindex(aim, theirs)
    result = SizeResult(runs, source, runferry, aim_convert, count_repo(ours), count_repo(theirs))
    want = {kind: source.get(kind, 0) for kind in ('metric', 'image', 'distribution')}
    got = {kind: result.runferry_counts.total(kind) for kind in want}
    if result.runferry_counts.runs != runs or got != want:
        raise SystemExit(f'runferry\'s repo of {logdir} differs from the source: {result.runferry_counts.runs} '
                         f'runs of {runs}, points {got}, written {want}')
    return result


def _load() -> str:
    return ' '.join(f'{x:.1f}' for x in os.getloadavg())


def _median(timed: List[Timed]) -> float:
    return statistics.median(t.wall for t in timed)


def _dropped_line(result: SizeResult) -> str:
    differences = compare_counts(result.runferry_counts, result.aim_convert_counts)
    if not differences:
        return 'aim convert\'s repo holds the same runs, sequences and points as runferry\'s'
    kinds = {'metric': 'scalar', 'distribution': 'histogram (aim.Distribution)', 'image': 'image', 'runs': 'runs'}
    return 'aim convert\'s repo differs from runferry\'s: ' + '; '.join(
        f'{kinds.get(what, what)}: {how}' for what, how in differences)


def summary_lines(result: SizeResult, fixed: float) -> List[str]:
    """What is printed and recorded for one logdir."""
    rf, ac = _median(result.runferry), _median(result.aim_convert)
    net = rf - fixed
    counts = result.runferry_counts
    rate = (f'{result.points / net:,.0f} points/s, {result.runs / net:,.1f} runs/s net of the fixed cost'
            if net > 0 else 'no rate: the median wall is within the fixed cost')
    met = 'goal met' if result.ratio >= GOAL else ('target met' if result.ratio >= TARGET else 'target NOT met')
    return [
        f'{result.runs} runs, {result.points:,} points ({counts.total("metric"):,} scalar + '
        f'{counts.total("distribution"):,} histogram): runferry {rf:.1f}s (median of {len(result.runferry)}), '
        f'aim convert {ac:.1f}s -> **{result.ratio:.1f}x** (ratio of medians; pairs '
        f'{", ".join(f"{r:.1f}x" for r in result.pair_ratios)}; target {TARGET:.0f}x, goal {GOAL:.0f}x: {met})',
        f'peak memory of the process tree (largest over the trials): runferry '
        f'{max(t.peak_mb for t in result.runferry):.0f} MB, aim convert {max(t.peak_mb for t in result.aim_convert):.0f} MB',
        f'runferry\'s rate: {rate} (fixed cost {fixed:.1f}s)',
        _dropped_line(result),
    ]


def record(info: Dict[str, str], sizes: List[SizeResult], fixed: List[Timed], bucket_lines: List[str],
           loads: List[str]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    fixed_s = _median(fixed)
    with open(RESULTS, 'a') as out:
        out.write(f'\n## {now}: runferry tf_to_aim against `aim convert tensorboard`\n\n')
        out.write(f'- machine: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}; Python {info["python"]}; '
                  f'load average (1, 5, 15 min) at each step: {"; ".join(loads)} (shared with other work: '
                  f'figures are noisy, pairs interleaved)\n')
        out.write('- aim convert: its own venv, aim 3.29.1 + tensorflow-cpu 2.21.0 + tensorboard 2.21.0, every '
                  'package pinned (`benchmarks/aim_convert_requirements.txt`); `aim init` + `aim convert --repo R '
                  'tensorboard --logdir L` timed together. runferry: `python -m pipelines.tf_to_aim --logdir L '
                  '--repo R`, its defaults. Fresh repos; interleaved pairs (runferry first)\n')
        out.write('- logdirs (`benchmarks/convert_logdir.py`): runs with train/validate contexts; even runs '
                  'tensorboardX (scalars and histograms, one file), odd runs TF2-style scalar tensors plus '
                  'tensorboardX histograms; a histogram every 50 steps\n')
        out.write(f'- runferry\'s fixed cost (one-run logdir of the 200-run shape; median of {len(fixed)}): {fixed_s:.1f}s '
                  f'({", ".join(f"{t.wall:.1f}s" for t in fixed)})\n')
        for result in sizes:
            lines = summary_lines(result, fixed_s)
            out.write(f'- {lines[0]}\n' + ''.join(f'  - {line}\n' for line in lines[1:]))
            out.write('  - every pair (runferry, aim convert): ' + ', '.join(
                f'({r.wall:.1f}s, {a.wall:.1f}s)' for r, a in zip(result.runferry, result.aim_convert)) + '\n')
        if len(sizes) >= 2:
            first, last = sizes[0], sizes[-1]
            peak = [max(t.peak_mb for t in s.runferry) for s in (first, last)]
            out.write(f'- runferry\'s peak memory {first.runs} -> {last.runs} runs: {peak[0]:.0f} -> {peak[1]:.0f} MB '
                      f'({peak[1] / peak[0]:.2f}x)\n')
        for line in bucket_lines:
            out.write(f'- {line}\n')


def _sizes(text: str) -> List[int]:
    if not text.strip():
        return []  # the step skipped (``benchmarks.run --runs-list ''``)
    try:
        sizes = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'--runs-list {text!r}: run counts separated by commas, e.g. 200,2000')
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f'--runs-list {text!r}: run counts of at least 1, e.g. 200,2000')
    return sizes


def _workers(text: str) -> List[int]:
    try:
        workers = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'--bucket-workers {text!r}: worker counts separated by commas, e.g. 1,2')
    if any(count < 1 for count in workers):
        raise argparse.ArgumentTypeError(f'--bucket-workers {text!r}: worker counts of at least 1')
    return workers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This step's flags (shared with ``benchmarks.run``)."""
    parser.add_argument('--runs-list', type=_sizes, default=[200, 2000],
                        help='run counts of the logdirs converted by both tools (default 200,2000; empty: skip)')
    parser.add_argument('--bucket-workers', type=_workers, default=[1, 2],
                        help='worker processes of the --repo s3:// lines (default 1,2; empty: skip)')


def run_step(cache: str, sizes: List[int], trials: int, bucket_workers: List[int], extra: List[str],
             record_results: bool = True) -> int:
    """The whole comparison; prints as it goes, appends to RESULTS.md unless told not to."""
    info = machine()
    loads = [f'start {_load()}']
    print(f'aim convert bench: {info["cores"]} cores, {info["ram"]} RAM, {info["cpu"]}, load {_load()}', flush=True)
    aim = ensure_venv(cache)
    for runs in [1] + sizes:
        started = time.perf_counter()
        logdir, shape, source = ensure_convert_logdir(cache, runs)
        print(f'logdir {logdir}: {runs} runs x 2 contexts, {shape.name} shape ({len(shape.tags)} tags x {shape.steps} '
              f'steps), {sum(source.values()):,} points {source} (ready in {time.perf_counter() - started:.0f}s)',
              flush=True)
    fixed = measure_fixed_cost(cache, trials, extra)
    fixed_s = _median(fixed)
    one_run_points = sum(ensure_convert_logdir(cache, 1)[2].values())
    print(f'runferry fixed cost (one run, {one_run_points:,} points): {fixed_s:.1f}s median '
          f'({", ".join(f"{t.wall:.1f}s" for t in fixed)}); load {_load()}', flush=True)
    results = []
    for runs in sizes:
        results.append(measure_size(cache, aim, runs, trials, extra))
        loads.append(f'after {runs} runs {_load()}')
        for line in summary_lines(results[-1], fixed_s):
            print(f'  {line}', flush=True)
    bucket_lines = []
    if bucket_workers:
        for result in results:
            logdir, _, _ = ensure_convert_logdir(cache, result.runs)
            bucket_lines.extend(measure_bucket(cache, logdir, result.runferry_counts, trials, bucket_workers, extra))
            loads.append(f'after the bucket lines ({result.runs} runs) {_load()}')
            if bucket_lines and 'not available' in bucket_lines[-1]:
                break
    for line in bucket_lines:
        print(line, flush=True)
    if record_results:
        record(info, results, fixed, bucket_lines, loads)
        print(f'appended to {os.path.relpath(RESULTS, ROOT)}', flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.aim_convert_bench',
                                     description=__doc__.split('\n')[0])
    add_arguments(parser)
    parser.add_argument('--trials', type=int, default=3, help='interleaved pairs per logdir (default 3)')
    parser.add_argument('--cache', default=os.path.join(ROOT, '.bench'))
    parser.add_argument('--no-record', action='store_true', help='do not append to benchmarks/RESULTS.md')
    parser.add_argument('extra', nargs='*', help='extra flags for tf_to_aim (after --)')
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f'--trials {args.trials}: at least 1')
    if not args.runs_list:
        parser.error('--runs-list: at least one run count, e.g. 200,2000')
    os.makedirs(args.cache, exist_ok=True)
    try:
        return run_step(args.cache, args.runs_list, args.trials, args.bucket_workers, args.extra,
                        record_results=not args.no_record)
    finally:
        empty_trash(args.cache)


if __name__ == '__main__':
    sys.exit(main())
