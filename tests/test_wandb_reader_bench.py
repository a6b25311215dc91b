"""The bench's side-by-side of ``.wandb`` readers (``benchmarks.wandb_bench.compare_readers``): W&B's own
Python reader (wandb 0.29.0, in the bench's venv) and runferry's count the same records in files the
real ``wandb`` wrote; a difference is shouted, not hidden. Nothing is timed or asserted about speed.

The venv is made by ``make bench`` (``python -m benchmarks.wandb_reader_venv``), never by the test suite:
without it, the comparison is skipped.
"""
from __future__ import annotations

import os

import pytest

from benchmarks import wandb_reader_venv
from benchmarks.aim_convert_venv import pinned_requirements
from benchmarks.wandb_bench import _reader_lines, compare_readers, counts_differ
from tests.wandb_runs import reference_records, wandb_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_CACHE = os.path.join(ROOT, '.bench')


def _counts(reader: str, **changes):
    counts = {'reader': reader, 'files': 2, 'records': 10, 'by_type': {'history': 6, 'run': 2, 'exit': 2},
              'history_rows': 6, 'history_items': 30, 'seconds': 0.5, 'records_per_s': 20.0, 'wall': 1.0,
              'peak_mb': 50.0}
    counts.update(changes)
    return counts


def test_the_wandb_reader_venv_is_pinned_made_once_and_shares_runferrys_protobuf(tmp_path):
    """Every package pinned; the protobuf runtime is runferry's (the same parser on both sides); a venv
    stamped with the requirements is taken as it is: no pip, no network."""
    pins = dict(line.lower().replace('_', '-').split('==') for line in
                pinned_requirements(wandb_reader_venv.REQUIREMENTS))
    with open(os.path.join(ROOT, 'constraints.txt')) as f:
        runferry = dict(line.strip().lower().split('==') for line in f if '==' in line)
    assert pins['wandb'] == '0.29.0' and pins['protobuf'] == runferry['protobuf']
    cache = str(tmp_path)
    venv = wandb_reader_venv.venv_dir(cache)
    assert not wandb_reader_venv.is_ready(cache)
    os.makedirs(venv)
    with open(wandb_reader_venv.REQUIREMENTS) as f, open(os.path.join(venv, '.installed'), 'w') as stamp:
        stamp.write(f.read())
    assert wandb_reader_venv.ensure_venv(cache, log=pytest.fail) == os.path.join(venv, 'bin', 'python')


def test_a_difference_in_counts_is_shouted():
    ours, theirs = _counts('runferry', problems=[]), _counts('wandb 0.29.0 DataStore')
    assert counts_differ(ours, theirs) == []
    skipped_one = _counts('wandb 0.29.0 DataStore', records=9, by_type={'history': 5, 'run': 2, 'exit': 2})
    damaged = _counts('runferry', problems=['f.wandb@7: chunk_crc: chunk fails its CRC'])
    assert counts_differ(ours, skipped_one) == [
        "records: runferry 10, wandb 9",
        "by_type: runferry {'history': 6, 'run': 2, 'exit': 2}, wandb {'history': 5, 'run': 2, 'exit': 2}"]
    assert counts_differ(damaged, theirs) == ['runferry reported a problem: f.wandb@7: chunk_crc: chunk fails its CRC']
    readers = {'files': 2, 'pairs': [], 'differences': ['trial 1: records: runferry 10, wandb 9'],
               'median': {'runferry': ours, 'wandb': skipped_one, 'ratio': 2.0}}
    assert _reader_lines(readers)[-1] == '!!! COUNTS DIFFER: trial 1: records: runferry 10, wandb 9'


@pytest.mark.slow
@pytest.mark.skipif(not wandb_reader_venv.is_ready(BENCH_CACHE),
                    reason=f"W&B's own reader venv is not built ({wandb_reader_venv.venv_dir(BENCH_CACHE)}): "
                           f'`make bench` or `python -m benchmarks.wandb_reader_venv` makes it; the suite does not')
def test_wandbs_own_reader_counts_what_runferrys_counts(wandb_runs):
    root, _ = wandb_runs
    files = wandb_files(root)  # every run of the session: media, a record over three blocks, a killed writer
    readers = compare_readers(wandb_reader_venv.venv_python(BENCH_CACHE), files, trials=1, log=lambda *a, **k: None)
    assert readers['differences'] == []
    ours, theirs = readers['median']['runferry'], readers['median']['wandb']
    assert theirs['reader'] == 'wandb 0.29.0 DataStore' and theirs['files'] == ours['files'] == len(files)
    assert ours['records'] == theirs['records'] == sum(sum(1 for _ in reference_records(path)) for path in files)
    assert ours['history_rows'] == theirs['history_rows'] == ours['by_type']['history'] > 200
