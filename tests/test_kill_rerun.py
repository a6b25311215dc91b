"""A conversion killed with SIGKILL mid-run, then run again, ends exactly like an uninterrupted one."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.readback import read_metrics, read_runs

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def convert_cmd(logdir, repo):
    return [sys.executable, '-m', 'pipelines.tf_to_aim', '--logdir', str(logdir), '--repo', str(repo)]


def test_kill_9_then_rerun_equals_an_uninterrupted_conversion(twenty_four_runs, tmp_path):
    logdir = tmp_path / 'logs'
    twenty_four_runs(logdir)  # 24 runs of train and validate contexts, 3,300 points each

    reference = tmp_path / 'reference'
    subprocess.run(convert_cmd(logdir, reference), cwd=ROOT, check=True, capture_output=True)

    killed = tmp_path / 'killed'
    process = subprocess.Popen(convert_cmd(logdir, killed), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    chunks = killed / '.aim' / 'meta' / 'chunks'
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if chunks.exists() and len(os.listdir(chunks)) >= 2:  # runs are being written
            break
        time.sleep(0.05)
    assert process.poll() is None, 'the conversion finished before it could be killed; make the logdir bigger'
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    written_before_kill = len(os.listdir(chunks))
    assert 0 < written_before_kill <= 24

    subprocess.run(convert_cmd(logdir, killed), cwd=ROOT, check=True, capture_output=True)

    assert read_metrics(str(killed)) == read_metrics(str(reference))
    for repo in (killed, reference):  # the runs' kept index records are gone once they are indexed
        kept = repo / '.aim' / 'runferry-index-records'
        assert not kept.exists() or os.listdir(kept) == [], os.listdir(kept)
    runs, expected_runs = read_runs(str(killed)), read_runs(str(reference))
    assert sorted(runs) == sorted(expected_runs) and len(runs) == 24
    for name, run in expected_runs.items():
        for field in ('hash', 'experiment', 'creation_time', 'end_time', 'active'):
            assert runs[name][field] == run[field], (name, field)
