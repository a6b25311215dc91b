"""Faults: storage, the MLflow server and the Aim server going away (through ``tests.flaky_proxy``, a real
TCP proxy in front of the real servers), and event files that nobody can read.

A short outage is waited out by ``connectors.retry`` and the repo equals the source; a lasting one ends
in one line naming the resource (or, once the pipeline runs, in dead letters naming it), in bounded
time, without tracebacks. The libraries' own per-request retries are turned off here
(``AWS_MAX_ATTEMPTS=1``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``) so that what survives is runferry's
retry, and its waits are cut short with the ``RUNFERRY_RETRY_*`` variables.
"""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import uuid

import pytest

from connectors.aim_remote import ServerUnusable, check_server
from connectors.event_files import EventFileSource
from connectors.retry import RetriesExhausted, RetryPolicy, call_with_retry, is_transient
from connectors.tfrecord import frame, iter_records
from tests.flaky_proxy import FlakyProxy
from tests.readback import assert_same_points, expected_metrics, read_metrics
from tests.servers import free_port
from tests.test_cloud_sources import error_lines

# Waits of 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6, 1.6-3.2 s: together at least 3.1 s, more than an outage below.
SURVIVE = {'RUNFERRY_RETRY_ATTEMPTS': '6', 'RUNFERRY_RETRY_INITIAL_SECONDS': '0.2',
           'RUNFERRY_RETRY_MAX_SECONDS': '30'}
# Three attempts within about half a second: how a lasting outage ends, quickly.
GIVE_UP = {'RUNFERRY_RETRY_ATTEMPTS': '3', 'RUNFERRY_RETRY_INITIAL_SECONDS': '0.1',
           'RUNFERRY_RETRY_MAX_SECONDS': '30'}
NO_LIBRARY_RETRIES = {'AWS_MAX_ATTEMPTS': '1', 'MLFLOW_HTTP_REQUEST_MAX_RETRIES': '0'}
OUTAGE = 1.5  # seconds


def setenv(monkeypatch, *envs):
    for env in envs:
        for key, value in env.items():
            monkeypatch.setenv(key, value)


# --------------------------------------------------------------------------------------------- the policy

def test_what_is_transient():
    import botocore.exceptions
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    def client_error(status, code):
        return botocore.exceptions.ClientError(
            {'Error': {'Code': code, 'Message': code}, 'ResponseMetadata': {'HTTPStatusCode': status}}, 'GetObject')

    def wrapped(outer, inner):
        try:
            try:
                raise inner
            except Exception:
                raise outer
        except Exception as error:
            return error

    transient = [
        ConnectionRefusedError(111, 'Connection refused'), ConnectionResetError(), TimeoutError(),
        urllib.error.URLError(ConnectionRefusedError(111, 'Connection refused')),
        urllib.error.HTTPError('http://x', 503, 'Service Unavailable', {}, None),
        botocore.exceptions.EndpointConnectionError(endpoint_url='http://x'),
        client_error(503, 'SlowDown'), client_error(500, 'InternalError'),
        RestException({'error_code': 'TEMPORARILY_UNAVAILABLE', 'message': 'later'}),
        wrapped(MlflowException('API request to http://x failed with exception ...'),
                __import__('requests').exceptions.ConnectionError('refused')),
        MlflowException("API request to endpoint /x failed with error code 502 != 200. Response body: ''"),
        wrapped(OSError(5, 'We encountered an internal error'), client_error(500, 'InternalError')),
        RuntimeError('Failed to connect to Aim Server. Have you forgot to run `aim server` command?'),
    ]
    permanent = [
        FileNotFoundError(2, 'No such file'), PermissionError(13, 'Permission denied'), IsADirectoryError(),
        urllib.error.HTTPError('http://x', 404, 'Not Found', {}, None), client_error(403, 'AccessDenied'),
        RestException({'error_code': 'RESOURCE_DOES_NOT_EXIST', 'message': 'no run'}),
        MlflowException('Run x not found', error_code=RESOURCE_DOES_NOT_EXIST),
        ValueError('bad data'), OSError('not a regular file (a named pipe)'),
        RetriesExhausted('s3://b/k', 3, 1.0, ConnectionRefusedError()),
    ]
    assert [e for e in transient if not is_transient(e)] == []
    assert [e for e in permanent if is_transient(e)] == []


def test_retries_then_names_the_resource(caplog):
    calls = []

    def flaky(fail_times):
        calls.append(time.monotonic())
        if len(calls) <= fail_times:
            raise ConnectionResetError(104, 'Connection reset by peer')
        return 'ok'

    policy = RetryPolicy(attempts=4, initial_seconds=0.05, max_seconds=10)
    assert call_with_retry(flaky, 3, resource='s3://b/k', policy=policy) == 'ok'
    assert len(calls) == 4
    waits = [b - a for a, b in zip(calls, calls[1:])]
    assert all(w >= 0.024 for w in waits) and waits[2] > waits[0]  # jittered doubling: 0.05, 0.1, 0.2 cut to 50-100 %
    assert len(caplog.records) == 3 and 'retrying in' in caplog.records[0].getMessage()

    calls.clear()
    with pytest.raises(RetriesExhausted) as info:
        call_with_retry(flaky, 99, resource='s3://b/k', policy=policy)
    assert len(calls) == 4
    assert re.fullmatch(r's3://b/k unreachable after 4 attempts over 0\.\d s: '
                        r'ConnectionResetError: \[Errno 104\] Connection reset by peer', str(info.value))
    assert isinstance(info.value, OSError)

    calls.clear()
    with pytest.raises(FileNotFoundError):  # not transient: raised at once
        call_with_retry(lambda: calls.append(1) or open('/nonexistent/x'), resource='x', policy=policy)
    assert calls == [1]

    # the time budget bounds the total however many attempts are allowed
    started = time.monotonic()
    with pytest.raises(RetriesExhausted):
        call_with_retry(flaky, 99, resource='x', policy=RetryPolicy(attempts=100, initial_seconds=0.2, max_seconds=1))
    assert time.monotonic() - started < 1.5


def test_classifying_an_error_imports_no_library():
    """``is_transient`` only looks at libraries already loaded: importing gcsfs early would freeze its
    settings (read at import) before ``EventFileSource`` sets them, and importing mlflow takes seconds."""
    code = ('import sys; from connectors.retry import is_transient; '
            '[is_transient(e) for e in (ValueError(), OSError("x"), RuntimeError("y"), ConnectionResetError())]; '
            'print(sorted(m for m in ("gcsfs", "mlflow", "s3fs", "aiohttp") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], cwd=os.path.dirname(os.path.dirname(__file__)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


# ------------------------------------------------------------------------------------------------------ S3

def _bucket() -> str:
    return f'runferry-{uuid.uuid4().hex[:12]}'


def _big_event_file(events: int):
    """An event file of ``events`` scalar records (~37 bytes each) and its points, as the writers report them."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    payloads, points = [], {}
    for i in range(events):
        tag, value, wall_time = f'metric_{i % 7}', i * 0.5, 1.7e9 + i
        payloads.append(event_pb2.Event(wall_time=wall_time, step=i, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])).SerializeToString())
        points[(tag, i)] = (value, wall_time)
    return payloads, points


@pytest.fixture
def s3_proxy(s3_server):
    with FlakyProxy(s3_server.port) as proxy:
        yield proxy


def _proxied_source(proxy, path) -> EventFileSource:
    return EventFileSource(f's3://{path}', {'endpoint_url': proxy.url, 'key': 'k', 'secret': 's'})


@pytest.mark.slow
def test_a_read_cut_mid_file_resumes_at_its_offset(s3fs_client, s3_proxy, monkeypatch):
    """A 3.3 MB file read through the proxy; the connection is cut 2.6 MB in (inside fsspec's second
    ranged read, after 2 MiB were handed out) and refused for 1.5 s: every record comes back once, in
    order, and the file was not read again from the start."""
    setenv(monkeypatch, SURVIVE, NO_LIBRARY_RETRIES)
    payloads, _ = _big_event_file(90_000)
    data = b''.join(frame(p) for p in payloads)
    bucket = _bucket()
    s3fs_client.mkdir(bucket)
    s3fs_client.pipe(f'{bucket}/logs/run/events.out.tfevents.1.host', data)

    source = _proxied_source(s3_proxy, f'{bucket}/logs')
    with source.open('run/events.out.tfevents.1.host') as stream:
        s3_proxy.cut_after(2_600_000, OUTAGE)
        got = [record.payload for record in iter_records(stream)]
    assert s3_proxy.outages == 1 and s3_proxy.cut >= 1
    assert got == payloads
    assert s3_proxy.bytes_down < len(data) + 2_000_000  # resumed at 2 MiB, not at 0


@pytest.mark.slow
def test_s3_outage_during_tf_to_aim_is_waited_out(s3fs_client, s3_proxy, seed_logdir, tmp_path, monkeypatch,
                                                 caplog):
    """tf_to_aim from s3:// through the proxy; halfway through the event files' bytes the proxy cuts
    every connection and refuses new ones for 1.5 s. The repo equals the source."""
    from pipelines import tf_to_aim

    setenv(monkeypatch, SURVIVE, NO_LIBRARY_RETRIES)
    root, expected = seed_logdir
    bucket = _bucket()
    s3fs_client.mkdir(bucket)
    s3fs_client.put(root, f'{bucket}/logs', recursive=True)
    listing_bytes = s3_proxy.bytes_down
    _proxied_source(s3_proxy, f'{bucket}/logs').list_event_files()  # what the launcher's listing costs
    listing_bytes = s3_proxy.bytes_down - listing_bytes
    file_bytes = sum(s3fs_client.size(p) for p in s3fs_client.find(f'{bucket}/logs'))
    s3_proxy.cut_after(listing_bytes + file_bytes // 2, OUTAGE)

    repo, skipped_path = str(tmp_path / 'aim'), tmp_path / 'skipped.jsonl'
    options = json.dumps({'endpoint_url': s3_proxy.url, 'key': 'k', 'secret': 's'})
    assert tf_to_aim.run(['--logdir', f's3://{bucket}/logs', '--repo', repo, '--storage-options', options,
                          '--skipped', str(skipped_path), '--report', str(tmp_path / 'report.json')]) == 0
    assert s3_proxy.outages == 1 and s3_proxy.cut >= 1
    # the workers retried (botocore would not: AWS_MAX_ATTEMPTS=1), one warning line and one count each
    retries = [r for r in caplog.records if r.name == 'runferry.retry']
    assert retries and json.load(open(tmp_path / 'report.json'))['counters']['retries'] == len(retries)
    assert_same_points(read_metrics(repo), expected_metrics(expected))
    skipped = [json.loads(line) for line in open(skipped_path)]
    assert {s['reason'] for s in skipped} == {'unorganized event file (not in a run directory)'}


@pytest.mark.slow
def test_s3_down_for_good_is_one_line_naming_the_logdir(s3_server, s3fs_client, s3_proxy, seed_logdir, tf_to_aim,
                                                       tmp_path):
    root, _ = seed_logdir
    bucket = _bucket()
    s3fs_client.mkdir(bucket)
    s3fs_client.put(root, f'{bucket}/logs', recursive=True)
    s3_proxy.down()
    env = {**s3_server.env, 'AWS_ENDPOINT_URL': s3_proxy.url, **GIVE_UP, **NO_LIBRARY_RETRIES}
    started = time.monotonic()
    result = tf_to_aim('--logdir', f's3://{bucket}/logs', '--repo', str(tmp_path / 'aim'), env=env, workers=1,
                       timeout=120)
    assert time.monotonic() - started < 60
    assert result.returncode == 2, result.stderr[-3000:]
    *retries, last = error_lines(result.stderr)
    assert re.fullmatch(rf'tf_to_aim: error: logdir s3://{bucket}/logs unreachable after 3 attempts over \d+\.\d s: '
                        rf'EndpointConnectionError: Could not connect to the endpoint URL: "{s3_proxy.url}/.*"', last)
    assert len(retries) == 2 and all('WARNING' in line and 'runferry.retry' in line and 'retrying in' in line
                                     for line in retries), retries  # one line a retry, no traceback
    assert 'Traceback' not in result.stderr
    assert not os.path.exists(tmp_path / 'aim')


@pytest.mark.slow
def test_s3_down_after_listing_makes_dead_letters_naming_the_file(s3fs_client, s3_proxy, seed_logdir, monkeypatch):
    """Once the pipeline runs, a file storage will not serve is a dead letter naming it, not a crash."""
    from transforms.classify import classify
    from runmodel import Skip
    from transforms.tensorboard import read_event_file

    setenv(monkeypatch, GIVE_UP, NO_LIBRARY_RETRIES)
    root, _ = seed_logdir
    bucket = _bucket()
    s3fs_client.mkdir(bucket)
    s3fs_client.put(root, f'{bucket}/logs', recursive=True)
    source = _proxied_source(s3_proxy, f'{bucket}/logs')
    assignment = classify(source.list_event_files()).assignments()[0]
    s3_proxy.down()
    started = time.monotonic()
    out = list(read_event_file(source, assignment, 100_000, collections.Counter()))
    assert time.monotonic() - started < 10
    assert out and all(isinstance(o, Skip) and o.kind == 'file' for o in out), out  # nothing read, no crash
    assert len(out) == 1, out  # one dead letter for the file (not also an 'empty event file' one)
    url = f's3://{bucket}/logs/{assignment.path}'
    assert {o.source for o in out} == {url}
    # (the listing left the file's size in s3fs's cache, so the open needs no request: the first read fails)
    assert any(re.fullmatch(rf'file (cannot be opened|cannot be read|read failed [a-z -]+): {re.escape(url)} unreachable after '
                            r'3 attempts over \d+\.\d s: EndpointConnectionError: .*', o.reason) for o in out), out


# -------------------------------------------------------------------------------------------------- MLflow

@pytest.fixture(scope='module')
def mlflow_behind_proxy():
    """A real ``mlflow server`` (SQLite) holding three small runs (every client call goes through the
    same retry, artifacts included; a rich run's 60-odd requests would only make the test slower)."""
    from mlflow import MlflowClient

    from samples.mlflow_store import log_many_runs, scratch_dir
    from tests import servers

    with scratch_dir() as root:
        with servers.mlflow_server(root) as server:
            client = MlflowClient(server.url)
            experiment = client.create_experiment('flaky')
            expected = log_many_runs(client, experiment, 3, prefix='flaky', steps=20)
            with FlakyProxy(server.port) as proxy:
                yield proxy, experiment, expected


@pytest.mark.slow
def test_mlflow_outages_are_waited_out(mlflow_behind_proxy, tmp_path, monkeypatch):
    """The server is unreachable when the launcher starts listing (1.5 s), and again once the workers
    are fetching runs (a response cut short, then 1.5 s refused). Every run arrives whole."""
    from connectors.mlflow_source import MlflowSource
    from pipelines import mlflow_to_aim
    from tests.test_mlflow_to_aim import assert_converted

    proxy, experiment, expected = mlflow_behind_proxy
    setenv(monkeypatch, SURVIVE, NO_LIBRARY_RETRIES)
    before = proxy.bytes_down
    source = MlflowSource(proxy.url)
    list(source.run_ids([e.experiment_id for e in source.experiments()]))  # what the launcher's listing costs
    listing_bytes = proxy.bytes_down - before

    outages = proxy.outages
    proxy.outage(OUTAGE)
    proxy.cut_after(listing_bytes + 1500, OUTAGE)
    repo = str(tmp_path / 'aim')
    assert mlflow_to_aim.run(['--tracking-uri', proxy.url, '--repo', repo,
                              '--skipped', str(tmp_path / 'skipped.jsonl')]) == 0
    assert proxy.outages == outages + 2
    assert_converted(repo, expected)
    skipped = [json.loads(line) for line in open(tmp_path / 'skipped.jsonl')]
    assert all(s['kind'] != 'run' for s in skipped), skipped


@pytest.mark.slow
def test_mlflow_down_for_good_is_one_line_naming_the_server(mlflow_behind_proxy, tmp_path, monkeypatch, capsys):
    from pipelines import mlflow_to_aim

    proxy = mlflow_behind_proxy[0]
    setenv(monkeypatch, GIVE_UP, NO_LIBRARY_RETRIES)
    proxy.down()
    try:
        started = time.monotonic()
        with pytest.raises(SystemExit) as exit_info:
            mlflow_to_aim.run(['--tracking-uri', proxy.url, '--repo', str(tmp_path / 'aim')])
        assert time.monotonic() - started < 10
    finally:
        proxy.up()
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(rf'mlflow_to_aim: error: cannot list experiments at {proxy.url}: MLflow {proxy.url} '
                        r'search_experiments unreachable after 3 attempts over \d+\.\d s: MlflowException: '
                        r'API request to .* Connection refused.*', line), line
    assert not os.path.exists(tmp_path / 'aim')


@pytest.mark.slow
def test_mlflow_down_during_fetch_is_a_dead_letter_naming_the_call(mlflow_behind_proxy, monkeypatch):
    from connectors.mlflow_source import MlflowSource
    from transforms.mlflow import FetchMlflowRunFn

    proxy, _, expected = mlflow_behind_proxy
    setenv(monkeypatch, GIVE_UP, NO_LIBRARY_RETRIES)
    run_id = sorted(expected)[0]
    proxy.down()
    try:
        out = list(FetchMlflowRunFn(MlflowSource(proxy.url), {}).process([run_id]))
    finally:
        proxy.up()
    assert [o.tag for o in out] == ['skipped']
    skip = out[0].value
    assert (skip.source, skip.kind) == (f'mlflow run {run_id}', 'run')
    assert skip.reason.startswith(f'run could not be read: RetriesExhausted: MLflow {proxy.url} get_run {run_id} '
                                  'unreachable after 3 attempts over ')


# ----------------------------------------------------------------------------------------------------- Aim

def test_aim_server_that_never_answers_is_named(monkeypatch):
    setenv(monkeypatch, GIVE_UP)
    url = f'aim://127.0.0.1:{free_port()}'  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ServerUnusable) as info:
        check_server(url)
    assert time.monotonic() - started < 5
    assert re.fullmatch(rf'--repo {url}: Aim server is not reachable \(Connection refused; 3 attempts over '
                        r'\d+\.\d s\)', str(info.value)), str(info.value)


@pytest.mark.slow
def test_aim_server_restarting_is_waited_for(aim_server, monkeypatch):
    setenv(monkeypatch, SURVIVE)
    with FlakyProxy(aim_server.port) as proxy:
        proxy.outage(OUTAGE)
        started = time.monotonic()
        check_server(f'aim://127.0.0.1:{proxy.port}')
        assert time.monotonic() - started >= OUTAGE - 0.1
        assert proxy.connections >= 1


# ------------------------------------------------------------------------------------------ unreadable files

def test_unreadable_event_files_are_dead_letters_with_their_reason(tmp_path):
    """Event files that cannot be read even by root (a dangling symlink, a named pipe, and unless root a
    file without read permission) are each a dead letter naming the file and why; everything else of
    the same run and of the other run is written."""
    from pipelines import tf_to_aim
    from samples.tensorboard_logs import write_tbx

    root = tmp_path / 'logs'
    expected = {('run_a', None): write_tbx(str(root / 'run_a'), ('loss', 'acc'), 12),
                ('run_b', None): write_tbx(str(root / 'run_b'), ('loss',), 8, salt=3)}
    broken = root / 'run_a' / 'events.out.tfevents.1700000001.broken'
    os.symlink(tmp_path / 'gone' / 'events.out.tfevents.1', broken)
    pipe = root / 'run_a' / 'events.out.tfevents.1700000002.pipe'
    os.mkfifo(pipe)  # opening it would wait for a writer forever
    reasons = {str(broken): f'file cannot be opened: broken symbolic link (its target '
                            f'{tmp_path / "gone" / "events.out.tfevents.1"} does not exist)',
               str(pipe): 'file cannot be opened: not a regular file (a named pipe)'}
    if os.geteuid() != 0:  # root reads it anyway
        locked = root / 'run_b' / 'events.out.tfevents.1700000003.locked'
        locked.write_bytes(b'\0' * 16)
        locked.chmod(0)
        reasons[str(locked)] = f"file cannot be opened: [Errno 13] Permission denied: '{locked}'"

    repo, skipped_path = tmp_path / 'aim', tmp_path / 'skipped.jsonl'
    assert tf_to_aim.run(['--logdir', str(root), '--repo', str(repo), '--skipped', str(skipped_path)]) == 0
    assert_same_points(read_metrics(str(repo)), expected_metrics(expected))
    skipped = [json.loads(line) for line in open(skipped_path)]
    assert {s['source']: s['reason'] for s in skipped} == reasons
    assert {s['kind'] for s in skipped} == {'file'}
