"""What one small run costs in the Aim write, split into open / write / close, against a bare aimrocks
open/put/close of an empty database; runs built in the repo against runs built on tmpfs and published.

    python -m benchmarks.run_open_cost [--runs 300] [--repeats 3] [--dir /tmp] [--staging /dev/shm]

Each run has a few metric series of 30 points (as a small MLflow run). Per phase it prints the CPU time
of the whole process (``time.process_time``: RocksDB's background threads included) and the wall time
(``time.perf_counter``), in ms a run, median over the repeats. The phases are timed around the same
calls ``AimRunWriter.write`` makes (``LocalRun``, ``RunSequences``, ``LocalRun.close``), opened in line
(no ``prepare`` ahead), so they add up; ``writer`` is ``AimRunWriter.write`` itself, end to end, and
``sync`` the one ``aim_staging.barrier`` the index step makes after all runs (a run published from a
stage is not synced before it), spread over the runs: ``writer`` + ``sync`` is what a run costs.

Two ways are measured in each repeat, their order alternating from one repeat to the next (interleaved
rounds): ``in repo`` (each run's databases created in the repo, as before ``connectors.aim_staging``)
and ``staged`` (built in ``--staging``, then published). Load on a shared machine is noisy: compare
the two ways within a repeat.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from typing import Dict, List, Optional

import aimrocks

from connectors import aim_staging
from connectors.aim_local_run import LocalRun
from connectors.aim_repo import open_repo
from connectors.aim_run_hash import run_hash_for
from connectors.aim_sequences import RunSequences
from connectors.aim_sink import AimRunWriter
from runmodel import METRIC, RunData, RunSpec, Series

PHASES = ('open', 'write', 'close')
WAYS = ('in repo', 'staged')
POINTS = 30
SERIES = 4


def small_run(index: int) -> RunData:
    """A run of ``SERIES`` metric series of ``POINTS`` points each."""
    series = []
    for s in range(SERIES):
        one = Series(METRIC, f'metric_{s}', {'subset': 'train'}, source='bench')
        for step in range(POINTS):
            one.append(step, 1_700_000_000.0 + step, float(step * (s + 1)), step)
        series.append(one)
    spec = RunSpec(identity=f'bench-run-{index}', name=f'run {index}', experiment='bench',
                   attributes={'lr': 0.01 * index, 'batch': 32})
    return RunData(spec, series)


class Clock:
    """CPU and wall seconds spent, by phase."""

    def __init__(self):
        self.cpu: Dict[str, float] = {}
        self.wall: Dict[str, float] = {}
        self._phase = None

    def start(self, phase: str) -> None:
        self._phase, self._cpu0, self._wall0 = phase, time.process_time(), time.perf_counter()

    def stop(self) -> None:
        self.cpu[self._phase] = self.cpu.get(self._phase, 0.0) + time.process_time() - self._cpu0
        self.wall[self._phase] = self.wall.get(self._phase, 0.0) + time.perf_counter() - self._wall0


def phases(repo_path: str, runs: List[RunData], staging: Optional[str]) -> Clock:
    """The storage path's three phases, as ``AimRunWriter._write_local_once`` calls them."""
    repo = open_repo(repo_path, create=False)
    clock = Clock()
    for data in runs:
        clock.start('open')
        run = LocalRun(repo, run_hash_for(data.spec.identity), staging)
        clock.stop()
        clock.start('write')
        sequences = RunSequences(run, data.origin, lambda skip: None)
        for item in data.items():
            sequences.write(item)
        for key, value in data.spec.attributes.items():
            run[key] = value
        sequences.finish()
        clock.stop()
        clock.start('close')
        run.close(end_time=sequences.last_time)
        clock.stop()
    return clock


def writer(repo_path: str, runs: List[RunData], staging: Optional[str]) -> Clock:
    """``AimRunWriter.write`` end to end (runs opened in line), then the index step's barrier."""
    sink = AimRunWriter(repo_path, staging=staging)
    clock = Clock()
    for data in runs:
        clock.start('writer')
        sink.write(data)
        clock.stop()
    clock.start('sync')
    aim_staging.barrier(repo_path)
    clock.stop()
    return clock


def bare(root: str, count: int) -> Clock:
    """aimrocks alone: create a database, put one record, close it (Aim's options, paranoid checks on)."""
    from aim.storage.rockscontainer import RocksContainer
    # Aim's options as a container holds them (its progress and lock files go under ``root`` too)
    probe = RocksContainer(os.path.join(root, 'chunks', 'probe'))
    options = dict(probe._db_opts, paranoid_checks=True)
    probe.close()
    clock = Clock()
    for index in range(count):
        clock.start('bare')
        db = aimrocks.DB(os.path.join(root, f'db{index}'), aimrocks.Options(**options))
        db.put(b'key', b'value')
        db.flush()
        db.flush_wal()
        del db
        clock.stop()
    return clock


def measure_way(base: str, count: int, staging: Optional[str]) -> Dict[str, float]:
    """One way, one repeat: ms a run (CPU and wall) for each phase and the writer."""
    result = {}
    for name, work in (('phases', phases), ('writer', writer)):
        repo_path = tempfile.mkdtemp(prefix=f'runopen-{name}-', dir=base)
        open_repo(repo_path, create=True)
        aim_staging.barrier(repo_path)  # what earlier work left unsynced is not this way's cost
        try:
            runs = [small_run(index) for index in range(count)]
            clock = work(repo_path, runs, staging)
        finally:
            shutil.rmtree(repo_path, ignore_errors=True)
        for phase in clock.cpu:
            result[f'{phase} cpu'] = 1000 * clock.cpu[phase] / count
            result[f'{phase} wall'] = 1000 * clock.wall[phase] / count
    return result


def measure_bare(base: str, count: int) -> Dict[str, float]:
    root = tempfile.mkdtemp(prefix='runopen-bare-', dir=base)
    try:
        clock = bare(root, count)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {'bare cpu': 1000 * clock.cpu['bare'] / count, 'bare wall': 1000 * clock.wall['bare'] / count}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=300)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--dir', default=None, help='where the temporary repos go (default: the temp dir)')
    parser.add_argument('--staging', default='/dev/shm', help='where the staged way builds runs')
    args = parser.parse_args(argv)
    staging = {'in repo': None, 'staged': args.staging}
    rounds: Dict[str, List[Dict[str, float]]] = {way: [] for way in WAYS}
    for repeat in range(args.repeats):
        order = WAYS if repeat % 2 == 0 else WAYS[::-1]
        for way in order:
            rounds[way].append(measure_way(args.dir, args.runs, staging[way]))
        bare_result = measure_bare(args.dir, args.runs)
        for way in WAYS:
            rounds[way][-1].update(bare_result)
    columns = [*PHASES, 'writer', 'sync', 'bare']
    print(f'{args.runs} runs of {SERIES}x{POINTS} points, {args.repeats} interleaved repeats, median ms a run '
          f'(repos in {args.dir or tempfile.gettempdir()}, staged in {args.staging}; load {os.getloadavg()[0]:.1f}):')
    print(f'{"":16}' + ''.join(f'{c:>9}' for c in columns))
    for way in WAYS:
        for kind in ('cpu', 'wall'):
            cells = [statistics.median(r[f'{c} {kind}'] for r in rounds[way]) for c in columns]
            print(f'{way + " " + kind:16}' + ''.join(f'{v:9.1f}' for v in cells))
    for way in WAYS:
        per_round = ', '.join(f"{r['writer cpu'] + r['sync cpu']:.1f}/{r['writer wall'] + r['sync wall']:.1f}"
                              for r in rounds[way])
        print(f'{way}: writer + sync, CPU/wall ms a run, by repeat: {per_round}')


if __name__ == '__main__':
    main()
