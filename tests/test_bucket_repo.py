"""``--repo s3://…`` / ``gs://…``: an Aim repo on object storage, against real local servers (moto, the GCS
emulator), written by two worker processes, copied down and read back through Aim's SDK."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from pipelines.destinations.aim import AimDestination
from samples.tensorboard_logs import write_tbx
from tests.readback import assert_same_points, expected_metrics, read_metrics, read_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKERS = '.runferry/index-records'


def convert(args, cwd, env=None, workers=2, timeout=600, wait=True):
    """``python -m pipelines.tf_to_aim ARGS`` run from ``cwd`` (not the project's directory: what it
    writes there is checked), dead letters into ``cwd``."""
    argv = [sys.executable, '-m', 'pipelines.tf_to_aim', *args, '--skipped', os.path.join(cwd, 'skipped.jsonl')]
    if workers > 1:
        argv += ['--direct_num_workers', str(workers), '--direct_running_mode', 'multi_processing']
    env = {**os.environ, **(env or {}), 'PYTHONPATH': ROOT}
    if not wait:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(params=['s3', 'gs'])
def cloud(request):
    """(scheme, an fsspec client on the server, the environment a conversion needs, extra flags)."""
    if request.param == 's3':
        server = request.getfixturevalue('s3_server')
        return 's3', request.getfixturevalue('s3fs_client'), server.env, []
    server = request.getfixturevalue('gcs_server')
    return 'gs', request.getfixturevalue('gcsfs_client'), server.env, ['--repo-storage-options', '{"token": "anon"}']


def _new_bucket(fs) -> str:
    bucket = f'runferry-{uuid.uuid4().hex[:12]}'
    fs.mkdir(bucket)
    return bucket


def _objects(fs, prefix: str) -> dict:
    """{object: (size, last modified)} under ``prefix``, listed afresh."""
    fs.invalidate_cache()
    found = fs.find(prefix, detail=True)
    return {path: (info['size'], str(info.get('LastModified') or info.get('updated') or info.get('mtime')))
            for path, info in found.items()}


def _copy_down(fs, prefix: str, local) -> str:
    fs.invalidate_cache()
    fs.get(f'{prefix}/', f'{local}/', recursive=True)
    return str(local)


def _markers(fs, prefix: str) -> list:
    fs.invalidate_cache()
    try:
        return fs.ls(f'{prefix}/{MARKERS}')
    except FileNotFoundError:
        return []


@pytest.mark.slow
def test_bucket_repo_two_workers_reads_back_and_a_rerun_rewrites_nothing(cloud, seed_logdir, tmp_path):
    scheme, fs, env, flags = cloud
    root, expected = seed_logdir
    prefix = f'{_new_bucket(fs)}/team/aim'
    url = f'{scheme}://{prefix}'
    cwd = tmp_path / 'cwd'
    cwd.mkdir()

    result = convert(['--logdir', root, '--repo', url, *flags], str(cwd), env)
    assert result.returncode == 0, result.stderr[-3000:]
    # the old bug: the URL was taken as a local path, and a directory 's3:'/'gs:' appeared here
    assert sorted(os.listdir(cwd)) == ['skipped.jsonl']
    copy_down = 'aws s3 sync' if scheme == 's3' else 'gcloud storage rsync --recursive'
    assert f'View the result: {copy_down} {url} aim-repo && aim up --repo aim-repo' in result.stdout

    # exactly an Aim repo's layout under the prefix: copied down, Aim's SDK reads every run
    repo = _copy_down(fs, prefix, tmp_path / 'copy')
    assert_same_points(read_metrics(repo), expected_metrics(expected))
    runs = read_runs(repo)
    assert sorted(runs) == sorted({run for run, _ in expected})
    for name, run in runs.items():
        times = [t for (r, _), points in expected.items() if r == name for _, t in points.values()]
        assert run['experiment'] == 'logs' and not run['active']
        assert abs(run['creation_time'] - min(times)) < 1e-3
        assert abs(run['end_time'] - max(times)) < 1e-3

    # a re-run adds nothing and rewrites nothing: every object as it was
    before = _objects(fs, prefix)
    again = convert(['--logdir', root, '--repo', url, *flags], str(cwd), env, workers=1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f'{len(runs)} run(s) already in {url}, equal: not uploaded again' in again.stdout
    assert _objects(fs, prefix) == before


@pytest.mark.slow
def test_kill_9_midway_then_rerun_equals_an_uninterrupted_conversion(s3_server, s3fs_client, tmp_path):
    """Killed once runs are being uploaded; a run then made half-uploaded (its marker and a table file
    gone, as a kill between its files leaves it); a re-run ends as an uninterrupted conversion."""
    logdir = tmp_path / 'logs'
    for i in range(12):
        write_tbx(str(logdir / f'run_{i:02d}' / 'train'), ('loss', 'acc'), 800, salt=i)
        write_tbx(str(logdir / f'run_{i:02d}' / 'validate'), ('loss',), 200, salt=i)
    cwd = tmp_path / 'cwd'
    cwd.mkdir()
    reference = str(tmp_path / 'reference')
    done = convert(['--logdir', str(logdir), '--repo', reference], str(cwd), workers=1)
    assert done.returncode == 0, done.stderr[-3000:]

    prefix = f'{_new_bucket(s3fs_client)}/aim'
    args = ['--logdir', str(logdir), '--repo', f's3://{prefix}']
    process = convert(args, str(cwd), s3_server.env, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and len(_markers(s3fs_client, prefix)) < 2:
        time.sleep(0.1)
    assert process.poll() is None, 'the conversion finished before it could be killed; make the logdir bigger'
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    markers = _markers(s3fs_client, prefix)
    assert 2 <= len(markers) < 12
    assert not s3fs_client.exists(f'{prefix}/.runferry/indexed.json')  # the index step never ran

    half = os.path.basename(markers[0]).split('.')[0]
    s3fs_client.rm_file(markers[0])
    tables = [p for p in s3fs_client.find(f'{prefix}/.aim/seqs/chunks/{half}') if p.endswith('.sst')]
    s3fs_client.rm_file(tables[0])

    result = convert(args, str(cwd), s3_server.env)
    assert result.returncode == 0, result.stderr[-3000:]
    repo = _copy_down(s3fs_client, prefix, tmp_path / 'copy')
    assert read_metrics(repo) == read_metrics(reference)
    runs, expected_runs = read_runs(repo), read_runs(reference)
    assert sorted(runs) == sorted(expected_runs) and len(runs) == 12
    for name, run in expected_runs.items():
        for field in ('hash', 'experiment', 'creation_time', 'end_time', 'active', 'attributes'):
            assert runs[name][field] == run[field], (name, field)


BLOCK_IMPORT = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 's3fs':
            raise ImportError('No module named ' + repr(name))
sys.meta_path.insert(0, Block())
from pipelines.tf_to_aim import run
sys.exit(run(sys.argv[1:]))
'''


@pytest.mark.parametrize('repo, words', [
    ('nosuch://bucket/aim', ["unknown storage protocol 'nosuch'", 'nosuch://bucket/aim']),
    ('s3://bucket/aim', ['needs s3fs', "pip install 'runferry[s3]'", 's3://bucket/aim']),
])
def test_unusable_bucket_url_is_one_line_and_writes_nothing(repo, words, tmp_path):
    """Checked as the flags are read (before the logdir is even listed): exit 2, one line naming it."""
    result = subprocess.run([sys.executable, '-c', BLOCK_IMPORT, '--logdir', str(tmp_path / 'logs'), '--repo', repo],
                            cwd=str(tmp_path), env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith('WARNING:root:apitools not found')]
    assert len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert os.listdir(tmp_path) == []


def test_bucket_repo_credentials_are_masked_in_what_is_shown():
    destination = AimDestination('s3://alice:hunter22@bucket/aim')
    shown = [destination.describe(), *destination.report_lines({'runs_written': 1, 'runs_unchanged': 1}),
             str(destination.report_fields())]
    assert not any('hunter22' in line for line in shown), shown
    assert any('aws s3 sync s3://alice:***@bucket/aim aim-repo' in line for line in shown), shown


def test_index_records_file_round_trips_without_pickle():
    """A marker file gives back the run's props and every meta record (blobs as blobs); the digest
    changes with any record."""
    import io

    from aim.storage.utils import BLOB

    from connectors.aim_bucket_records import content_digest, read_props, read_records, write_records
    from connectors.aim_index import RunProps

    props = RunProps('abc', 'run', 'exp', 'notes', ('a', 'b'), 1.5, 2.5)
    records = [(b'k1', b'v1', False), (b'k2', b'\x00' * 300, True)]
    out = io.BytesIO()
    write_records(out, props, records)
    assert read_props(io.BytesIO(out.getvalue())) == props
    got_props, got = read_records(io.BytesIO(out.getvalue()))
    got = list(got)
    assert got_props == props and got[0] == (b'k1', b'v1')
    assert isinstance(got[1][1], BLOB) and bytes(got[1][1].load()) == b'\x00' * 300
    assert content_digest(props, records) == content_digest(props, list(records))
    assert content_digest(props, records) != content_digest(props, records[:1] + [(b'k2', b'\x01' * 300, True)])
