"""A writer's runs' index records kept in one file beside the repo (``connectors.aim_kept_records``):
read back per run, equal to what was packed; the file removed once its runs are indexed; a dead
writer's file removed by the next index step, a live one's left alone."""
from __future__ import annotations

import os
import subprocess
import sys

from connectors.aim_index import RunProps
from connectors.aim_kept_records import KEPT_DIR, KeptRecords, RecordFiles, discard, remove_stale
from connectors.aim_local_run import pack_records
from connectors.aim_record_frames import unpack_records


def _records(n: int):
    return [(b'meta/chunks/run%d/key%03d' % (n, i), b'value-%d-%d' % (n, i) * (i + 1)) for i in range(40)]


def test_a_writers_runs_share_one_file_and_read_back_each_as_packed(tmp_path):
    repo = str(tmp_path / 'repo')
    kept = KeptRecords(repo)
    places = {}
    for n in range(3):
        packed = pack_records(_records(n))
        places[f'run{n}'] = kept.keep(RunProps(hash=f'run{n}', name=f'run {n}', experiment='e'), packed)
        assert [(k, bytes(v)) for k, v in unpack_records(packed)] == _records(n)
    kept.close()
    assert len({path for path, _, _ in places.values()}) == 1  # one file, three entries
    assert [offset for _, offset, _ in places.values()] == sorted({offset for _, offset, _ in places.values()})
    files = RecordFiles(places)
    for n in range(3):
        assert [(key, bytes(value)) for key, value in files[f'run{n}']] == _records(n)
    discard(places.values())
    assert os.listdir(os.path.join(repo, '.aim', KEPT_DIR)) == []


def test_a_dead_writers_file_is_removed_and_a_live_ones_left(tmp_path):
    repo = str(tmp_path / 'repo')
    mine = KeptRecords(repo)
    path, _, _ = mine.keep(RunProps(hash='a', name='a', experiment='e'), pack_records(_records(0)))
    # a writer in a process that is gone (a killed conversion's)
    code = ('import sys; from connectors.aim_kept_records import KeptRecords; from connectors.aim_index import RunProps; '
            'print(KeptRecords(sys.argv[1]).keep(RunProps(hash="b", name="b", experiment="e"), b"")[0])')
    dead = subprocess.run([sys.executable, '-c', code, repo], check=True, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.strip()
    assert sorted(os.listdir(os.path.dirname(path))) == sorted([os.path.basename(path), os.path.basename(dead)])
    remove_stale(repo)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
