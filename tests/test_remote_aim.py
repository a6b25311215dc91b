"""``--repo aim://HOST:PORT``: the launcher's check, and conversion into a real ``aim server``."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from connectors.aim_remote import ServerUnusable, check_server, parse_aim_url
from connectors.aim_sink import run_hash_for
from tests.readback import assert_same_points, expected_metrics
from tests.servers import free_port
from tests.test_cloud_sources import error_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

READ_BACK = '''
import json, sys
from tests.readback import read_metrics, read_runs
metrics = read_metrics(sys.argv[1])
runs = read_runs(sys.argv[1])
print(json.dumps({'metrics': [[list(k), v] for k, v in metrics.items()], 'runs': runs}))
'''


def read_back(repo: str):
    """The repo as the Aim SDK shows it, read in a fresh process (no cached Repo, as a user would)."""
    result = subprocess.run([sys.executable, '-c', READ_BACK, repo], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    metrics = {tuple(k): [tuple(p) for p in v] for k, v in data['metrics']}
    return metrics, data['runs']


def test_parse_aim_url():
    assert parse_aim_url('aim://127.0.0.1:53800') == ('127.0.0.1', 53800)
    assert parse_aim_url('aim://tracker.example.com:80/') == ('tracker.example.com', 80)
    for bad in ('aim://127.0.0.1', 'aim://:53800', 'aim://host:port', 'aim://host:0'):
        with pytest.raises(ServerUnusable, match='aim://HOST:PORT'):
            parse_aim_url(bad)


def test_something_else_at_the_port_is_not_an_aim_server(s3_server):
    with pytest.raises(ServerUnusable, match='not an Aim tracking server'):
        check_server(f'aim://127.0.0.1:{s3_server.port}')


def test_unreachable_server_is_one_line_before_any_work(seed_logdir, tf_to_aim):
    root, _ = seed_logdir
    url = f'aim://127.0.0.1:{free_port()}'  # nothing listens there any more
    fast_retry = {'RUNFERRY_RETRY_ATTEMPTS': '2', 'RUNFERRY_RETRY_INITIAL_SECONDS': '0.1'}
    result = tf_to_aim('--logdir', root, '--repo', url, workers=1, timeout=120, env=fast_retry)
    assert result.returncode == 2, result.stderr[-3000:]
    *retries, last = error_lines(result.stderr)
    assert re.fullmatch(rf'tf_to_aim: error: --repo {url}: Aim server is not reachable \(Connection refused; '
                        r'2 attempts over \d+\.\d s\)', last), last
    assert len(retries) == 1 and 'retrying in' in retries[0]  # one warning line per retry (connectors.retry)
    assert result.stdout == ''


@pytest.mark.slow
def test_convert_into_aim_server_with_two_workers(aim_server, eight_run_logdir, tf_to_aim):
    """8 runs written by 2 worker processes through the server; the server's repo, opened with the
    Aim SDK, holds every point, wall time, run name, experiment and time; a re-run (in the launcher's own
    process, as 8 runs are converted by default) changes nothing."""
    root, expected = eight_run_logdir
    result = tf_to_aim('--logdir', root, '--repo', aim_server.url)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'runs written                8' in result.stdout and 'runs failed                 0' in result.stdout
    assert 'Traceback' not in result.stderr and 'LockError' not in result.stderr

    metrics, runs = read_back(aim_server.repo)
    assert_same_points(metrics, expected_metrics(expected))
    assert sorted(runs) == sorted({run for run, _ in expected})
    for name, run in runs.items():
        times = [t for (r, _), points in expected.items() if r == name for _, t in points.values()]
        assert run['hash'] == run_hash_for(f'tensorboard:{os.path.join(root, name)}')
        assert run['experiment'] == 'logs'
        assert abs(run['creation_time'] - min(times)) < 1e-3
        assert abs(run['end_time'] - max(times)) < 1e-3
        assert run['active'] is False
        assert run['attributes']['tensorboard_logdir'] == os.path.join(root, name)

    again = tf_to_aim('--logdir', root, '--repo', aim_server.url, workers=1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_back(aim_server.repo) == (metrics, runs)
