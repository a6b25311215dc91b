"""Real servers for end-to-end tests, each started on 127.0.0.1 with a free port and always stopped.

* ``moto_s3()``: moto's standalone server (S3), reached with ``AWS_ENDPOINT_URL``.
* ``gcs_emulator()``: ``gcp-storage-emulator`` (in memory), reached with ``STORAGE_EMULATOR_HOST``.
* ``aim_server(repo)``: ``aim server`` over a local repo, reached as ``aim://127.0.0.1:PORT``.
* ``postgres_server()``: a PostgreSQL 15 cluster in a temp dir, reached as
  ``postgresql+psycopg://mlflow@127.0.0.1:PORT/postgres`` (SQLAlchemy with psycopg 3).

Each context manager waits until the server answers HTTP, yields what a client needs, and kills the
server's whole process group on exit, even when the test failed. A server that does not come up fails
with the tail of its own log.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Dict, Iterator, List

__all__ = ['free_port', 'Server', 'moto_s3', 'gcs_emulator', 'mlflow_server', 'aim_server', 'postgres_server',
           'S3_ENV', 'GCS_ENV', 'POSTGRES_BIN']

BIN = os.path.dirname(sys.executable)  # the venv's console scripts sit beside its python
POSTGRES_BIN = '/usr/lib/postgresql/15/bin'

# Dummy credentials so that s3fs/botocore never look further (config files, instance metadata).
S3_ENV = {'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': 'us-east-1'}
# gcsfs reads this at import: off, it does not probe each bucket over gRPC (an emulator cannot answer).
GCS_ENV = {'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false'}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Server:
    """A running server: its port, its base URL, and the environment a client process needs."""
    port: int
    url: str
    env: Dict[str, str]
    log_path: str


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, even if with an error status
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)  # the process group: servers may have spawned workers
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def _serve(command: List[str], probe_path: str, env: Dict[str, str], port: int,
           timeout: float = 60.0) -> Iterator[Server]:
    url = f'http://127.0.0.1:{port}'
    with tempfile.NamedTemporaryFile('w+b', prefix='runferry-server-', suffix='.log', delete=False) as log:
        log_path = log.name
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **env}, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url + probe_path):
            if process.poll() is not None or time.monotonic() > deadline:
                with open(log_path, 'rb') as f:
                    tail = f.read()[-3000:].decode('utf-8', 'replace')
                state = f'exited with {process.returncode}' if process.poll() is not None else 'timed out'
                raise RuntimeError(f'{command[0]} {state} before answering at {url}:\n{tail}')
            time.sleep(0.2)
        yield Server(port=port, url=url, env=env, log_path=log_path)
    finally:
        _stop(process)
        with contextlib.suppress(OSError):
            os.unlink(log_path)


@contextlib.contextmanager
def moto_s3() -> Iterator[Server]:
    """An S3 server; ``server.env`` holds ``AWS_ENDPOINT_URL`` and dummy credentials."""
    port = free_port()
    with _serve([os.path.join(BIN, 'moto_server'), '-H', '127.0.0.1', '-p', str(port)], '/', {}, port) as server:
        server.env = {**S3_ENV, 'AWS_ENDPOINT_URL': server.url}
        yield server


@contextlib.contextmanager
def gcs_emulator() -> Iterator[Server]:
    """A GCS emulator; ``server.env`` holds ``STORAGE_EMULATOR_HOST`` and the gcsfs switch above.
    Clients also need ``token="anon"`` (the emulator does no auth)."""
    port = free_port()
    command = [os.path.join(BIN, 'gcp-storage-emulator'), 'start', '--host', '127.0.0.1', '--port', str(port),
               '--in-memory']
    with _serve(command, '/storage/v1/b', {}, port) as server:
        server.env = {**GCS_ENV, 'STORAGE_EMULATOR_HOST': server.url}
        yield server


@contextlib.contextmanager
def mlflow_server(root: str, artifacts: List[str] = (), env: Dict[str, str] = None,
                  timeout: float = 120) -> Iterator[Server]:
    """``mlflow server`` over a SQLite store in ``root``; its artifacts proxied by the server into
    ``root/artifacts`` unless ``artifacts`` gives other ``mlflow server`` flags for them. ``timeout``:
    seconds it may take to answer (its start alone took 2 minutes on this 2-core machine under load)."""
    port = free_port()
    artifact_flags = list(artifacts) or ['--artifacts-destination', f'{root}/artifacts']
    command = [os.path.join(BIN, 'mlflow'), 'server', '--backend-store-uri', f'sqlite:///{root}/m.db',
               *artifact_flags, '--host', '127.0.0.1', '--port', str(port), '--workers', '1']
    with _serve(command, '/health', env or {}, port, timeout=timeout) as server:
        yield server


@contextlib.contextmanager
def aim_server(repo: str) -> Iterator[Server]:
    """``aim server`` over the local repo ``repo`` (created if missing); ``server.url`` is ``aim://…``."""
    port = free_port()
    os.makedirs(repo, exist_ok=True)
    command = [os.path.join(BIN, 'aim'), 'server', '--repo', repo, '--host', '127.0.0.1', '--port', str(port),
               '-y']
    with _serve(command, '/status/', {}, port) as server:
        server.url = f'aim://127.0.0.1:{port}'
        yield server


@contextlib.contextmanager
def postgres_server() -> Iterator[Server]:
    """A PostgreSQL 15 cluster in a fresh temp dir (trust auth, user ``mlflow``, TCP on 127.0.0.1 only);
    ``server.url`` is a SQLAlchemy URI for MLflow. PostgreSQL refuses to run as root, so when this runs as
    root the cluster belongs to the ``postgres`` user. The cluster is stopped (fast) and its dir removed
    on exit, even when the test failed."""
    import pwd
    import shutil

    if not os.path.isfile(os.path.join(POSTGRES_BIN, 'pg_ctl')):
        raise RuntimeError(f'PostgreSQL 15 is not installed at {POSTGRES_BIN}')
    as_user: List[str] = []
    root = tempfile.mkdtemp(prefix='runferry-postgres-')
    if os.geteuid() == 0:
        owner = pwd.getpwnam('postgres')
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ['runuser', '-u', 'postgres', '--']
    data, log_path, port = os.path.join(root, 'data'), os.path.join(root, 'log'), free_port()
    ctl = [*as_user, os.path.join(POSTGRES_BIN, 'pg_ctl'), '-D', data]
    try:
        subprocess.run([*as_user, os.path.join(POSTGRES_BIN, 'initdb'), '-D', data, '-A', 'trust', '-U', 'mlflow'],
                       check=True, capture_output=True, timeout=120)
        started = subprocess.run([*ctl, '-o', f'-p {port} -k {root} -c listen_addresses=127.0.0.1', '-l', log_path,
                                  '-w', '-t', '60', 'start'], capture_output=True, text=True, timeout=90)
        if started.returncode != 0:
            with open(log_path, errors='replace') as f:
                raise RuntimeError(f'PostgreSQL did not start: {started.stderr[-1000:]}\n{f.read()[-2000:]}')
        yield Server(port=port, url=f'postgresql+psycopg://mlflow@127.0.0.1:{port}/postgres', env={},
                     log_path=log_path)
    finally:
        subprocess.run([*ctl, '-m', 'fast', 'stop'], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
