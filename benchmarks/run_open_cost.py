"""What one small run costs in the Aim write, split into open / write / close, against a bare aimrocks
open/put/close of an empty database.

    python -m benchmarks.run_open_cost [--runs 300] [--repeats 3] [--dir /dev/shm]

Each run has a few metric series of 30 points (as a small MLflow run). Per phase it prints the CPU time
of the whole process (``time.process_time``: RocksDB's background threads included) and the wall time
(``time.perf_counter``), in ms a run, median over the repeats. The phases are timed around the same
calls ``AimRunWriter.write`` makes (``LocalRun``, ``RunSequences``, ``LocalRun.close``), opened in line
(no ``prepare`` ahead), so they add up; the last column is ``AimRunWriter.write`` itself, end to end.
Load on a shared machine is noisy: compare CPU ms, back to back.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from typing import Dict, List

import aimrocks

from connectors.aim_local_run import LocalRun
from connectors.aim_repo import open_repo
from connectors.aim_run_hash import run_hash_for
from connectors.aim_sequences import RunSequences
from connectors.aim_sink import AimRunWriter
from runmodel import METRIC, RunData, RunSpec, Series

PHASES = ('open', 'write', 'close')
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


def phases(repo_path: str, runs: List[RunData]) -> Clock:
    """The storage path's three phases, as ``AimRunWriter._write_local`` calls them."""
    repo = open_repo(repo_path, create=False)
    clock = Clock()
    for data in runs:
        clock.start('open')
        run = LocalRun(repo, run_hash_for(data.spec.identity))
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


def writer(repo_path: str, runs: List[RunData]) -> Clock:
    """``AimRunWriter.write`` end to end (runs opened in line)."""
    sink = AimRunWriter(repo_path)
    clock = Clock()
    for data in runs:
        clock.start('writer')
        sink.write(data)
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


def measure(base: str, count: int) -> Dict[str, float]:
    """One repeat: ms a run (CPU and wall) for each phase, the writer and the bare database."""
    result = {}
    for name, work in (('phases', phases), ('writer', writer)):
        repo_path = tempfile.mkdtemp(prefix=f'runopen-{name}-', dir=base)
        open_repo(repo_path, create=True)
        try:
            runs = [small_run(index) for index in range(count)]
            clock = work(repo_path, runs)
        finally:
            shutil.rmtree(repo_path, ignore_errors=True)
        for phase in clock.cpu:
            result[f'{phase} cpu'] = 1000 * clock.cpu[phase] / count
            result[f'{phase} wall'] = 1000 * clock.wall[phase] / count
    root = tempfile.mkdtemp(prefix='runopen-bare-', dir=base)
    try:
        clock = bare(root, count)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result['bare cpu'] = 1000 * clock.cpu['bare'] / count
    result['bare wall'] = 1000 * clock.wall['bare'] / count
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=300)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--dir', default=None, help='where the temporary repos go (default: the temp dir)')
    args = parser.parse_args(argv)
    repeats = [measure(args.dir, args.runs) for _ in range(args.repeats)]
    columns = [*PHASES, 'writer', 'bare']
    print(f'{args.runs} runs of {SERIES}x{POINTS} points, {args.repeats} repeats, median ms a run '
          f'(in {args.dir or tempfile.gettempdir()}):')
    print(f'{"":6}' + ''.join(f'{c:>10}' for c in columns))
    for kind in ('cpu', 'wall'):
        cells = [statistics.median(r[f'{c} {kind}'] for r in repeats) for c in columns]
        print(f'{kind:6}' + ''.join(f'{v:10.1f}' for v in cells))


if __name__ == '__main__':
    main()
