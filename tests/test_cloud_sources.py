"""``--logdir s3://…`` and ``gs://…`` against real local servers (moto, gcp-storage-emulator)."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid

import pytest

from connectors.event_files import EventFileSource
from connectors.tfrecord import frame, iter_records
from tests.readback import assert_same_points, expected_metrics, read_metrics, read_runs


def error_lines(stderr: str) -> list:
    """stderr's lines, without the warning Beam itself logs at import when apitools is not installed."""
    return [line for line in stderr.strip().splitlines() if not line.startswith('WARNING:root:apitools not found')]


def _upload(fs, local_root: str, bucket: str) -> str:
    """Create ``bucket`` and copy the logdir under ``bucket/logs``; returns the bucket path."""
    fs.mkdir(bucket)
    fs.put(local_root, f'{bucket}/logs', recursive=True)
    return f'{bucket}/logs'


def _bucket() -> str:
    return f'runferry-{uuid.uuid4().hex[:12]}'


def _assert_converted(result, repo: str, expected: dict) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_points(read_metrics(repo), expected_metrics(expected))
    runs = read_runs(repo)
    assert sorted(runs) == sorted({run for run, _ in expected})
    for name, run in runs.items():
        times = [t for (r, _), points in expected.items() if r == name for _, t in points.values()]
        assert run['experiment'] == 'logs'
        assert abs(run['creation_time'] - min(times)) < 1e-3
        assert abs(run['end_time'] - max(times)) < 1e-3


@pytest.mark.slow
def test_s3_logdir_with_two_workers(s3_server, s3fs_client, eight_run_logdir, tf_to_aim, tmp_path):
    """8 runs from s3:// (endpoint from AWS_ENDPOINT_URL) into one local repo by 2 worker processes."""
    root, expected = eight_run_logdir
    path = _upload(s3fs_client, root, _bucket())
    repo = str(tmp_path / 'aim')
    result = tf_to_aim('--logdir', f's3://{path}', '--repo', repo, env=s3_server.env)
    _assert_converted(result, repo, expected)
    assert 'runs written                8' in result.stdout


@pytest.mark.slow
def test_gcs_logdir_with_two_workers(gcs_server, gcsfs_client, seed_logdir, tf_to_aim, tmp_path):
    """gs:// through the emulator (STORAGE_EMULATOR_HOST); the anonymous token via --storage-options."""
    root, expected = seed_logdir
    path = _upload(gcsfs_client, root, _bucket())
    repo = str(tmp_path / 'aim')
    result = tf_to_aim('--logdir', f'gs://{path}', '--repo', repo, '--storage-options', '{"token": "anon"}',
                       env=gcs_server.env)
    _assert_converted(result, repo, expected)


def test_storage_options_reach_fsspec(s3_server, s3fs_client, seed_logdir, tf_to_aim):
    """The endpoint and keys given only as --storage-options (none in the environment) list the bucket
    in the launcher, and a pickled source (what a worker gets) reads with them too."""
    root, _ = seed_logdir
    path = _upload(s3fs_client, root, _bucket())
    options = {'endpoint_url': s3_server.url, 'key': 'k', 'secret': 's', 'client_kwargs': {'region_name': 'us-east-1'}}
    env = {k: '' for k in ('AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY')}
    env['AWS_CONFIG_FILE'] = env['AWS_SHARED_CREDENTIALS_FILE'] = os.devnull
    result = tf_to_aim('--logdir', f's3://{path}', '--repo', 'unused', '--dry-run',
                       '--storage-options', json.dumps(options), env=env, workers=1)
    assert result.returncode == 0, result.stderr[-3000:]
    for run in ('run_1', 'group_1/run_2', 'group_1/run_3'):
        assert run in result.stdout

    source = pickle.loads(pickle.dumps(EventFileSource(f's3://{path}', options)))
    assert source._fs is None  # a worker builds its own client from the options
    listing = source.list_event_files()
    assert len(listing) == 7  # 5 run files + 2 unorganized
    with source.open(listing[0]) as stream:
        assert stream.read(12)  # a record header


def test_event_files_are_streamed(s3_server, s3fs_client):
    """Reading the first record of a 3 MB event file fetches about one 1 MiB block, not the file."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    events = [event_pb2.Event(wall_time=1.7e9 + i, step=i, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=f'metric_{i % 7}', simple_value=i * 0.5)]))
        for i in range(80_000)]
    data = b''.join(frame(e.SerializeToString()) for e in events)
    assert len(data) > 3 * (1 << 20)
    bucket = _bucket()
    s3fs_client.mkdir(bucket)
    s3fs_client.pipe(f'{bucket}/logs/run/events.out.tfevents.1.host', data)

    source = EventFileSource(f's3://{bucket}/logs', {'endpoint_url': s3_server.url, 'key': 'k', 'secret': 's'})
    with source.open('run/events.out.tfevents.1.host') as stream:
        first = next(iter_records(stream))
        fetched = stream.cache.total_requested_bytes
        assert first.payload == events[0].SerializeToString()
        assert 0 < fetched <= 2 * (1 << 20) < len(data)
    with source.open('run/events.out.tfevents.1.host') as stream:
        assert sum(1 for _ in iter_records(stream)) == len(events)


BLOCK_IMPORT = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == {module!r}:
            raise ImportError('No module named ' + repr(name))
sys.meta_path.insert(0, Block())
from pipelines.tf_to_aim import run
sys.exit(run(sys.argv[1:]))
'''


@pytest.mark.parametrize('url, module, extra', [('s3://bucket/logs', 's3fs', 's3'),
                                                ('gs://bucket/logs', 'gcsfs', 'gcs')])
def test_missing_extra_is_one_line_naming_it(url, module, extra, tmp_path):
    """With the filesystem package not importable, the launcher exits 2 with one line naming the extra."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, '-c', BLOCK_IMPORT.format(module=module),
                             '--logdir', url, '--repo', str(tmp_path / 'aim')],
                            cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert f"pip install 'runferry[{extra}]'" in lines[0] and module in lines[0] and url in lines[0]
    assert not os.path.exists(tmp_path / 'aim')
