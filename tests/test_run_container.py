"""A run's containers opened at a small run's cost (``connectors.aim_run_container``): what they do on
disk while the run is open, and that Aim reads the closed run back whole.

The options are checked through the files RocksDB leaves (a real repo, a real run): a MANIFEST
preallocated 64 KB, not 4 MB, while the run is open, and a write-ahead log that stays empty (the records
reach the database at the close's flush).
"""
from __future__ import annotations

import glob
import os
from array import array

from aim.sdk.repo import Repo
from aim.storage.context import Context

from connectors.aim_index import index_runs
from connectors.aim_local_run import LocalRun
from connectors.aim_repo import open_repo
from connectors.aim_sequences import RunSequences
from runmodel import METRIC, Series

RUN_HASH = 'ab12cd34ef56ab12cd34ef56'


def _allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


def test_an_open_run_preallocates_little_and_writes_no_log_and_aim_reads_it_back(tmp_path):
    repo = open_repo(str(tmp_path / 'repo'), create=True)
    run = LocalRun(repo, RUN_HASH)
    steps = list(range(30))
    series = Series(METRIC, 'loss', {'subset': 'train'}, array('q', steps), array('d', [1e9 + s for s in steps]),
                    array('d', [s / 4 for s in steps]), 'test', array('q', steps))
    sequences = RunSequences(run, 'test', lambda skip: None)
    sequences.write([series])
    run['lr'] = 0.5
    sequences.finish()
    for name in ('meta', 'seqs'):
        db = os.path.join(repo.path, name, 'chunks', RUN_HASH)
        manifests = glob.glob(os.path.join(db, 'MANIFEST-*'))
        assert manifests and all(_allocated(m) <= 64 * 1024 for m in manifests), \
            [(m, _allocated(m)) for m in manifests]
        logs = glob.glob(os.path.join(db, '*.log'))
        assert logs and all(os.path.getsize(log) == 0 for log in logs), [(log, os.path.getsize(log)) for log in logs]
    run.close(end_time=2e9)
    index_runs(repo.path, [RUN_HASH])

    aim_run = Repo.from_path(repo.path).get_run(RUN_HASH)
    assert aim_run['lr'] == 0.5
    metric = aim_run.get_metric('loss', Context({'subset': 'train'}))
    got_steps, (values, _epochs, _times) = metric.data.items_list()
    assert list(got_steps) == steps and list(values) == [s / 4 for s in steps]
