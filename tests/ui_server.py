"""Aim's own UI server (``aim up``) on 127.0.0.1 for tests, and a client for its streamed HTTP API.

``/api/runs/search/run/`` does not answer JSON: it streams ``encode_tree`` pairs of Aim's storage
format, each framed as ``uint32 key length, key, uint32 value length, value`` (``collect_streamable_data``
in ``aim/web/api/runs/utils.py``). ``decode_run_search`` undoes the framing and folds the pairs back
into a dict with Aim's own ``decode_tree``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from typing import Dict, Iterator, List, Tuple

__all__ = ['free_port', 'aim_up', 'decode_run_search', 'search_runs', 'render_page', 'run_names_in', 'CHROMIUM']

CHROMIUM = '/usr/bin/chromium'
AIM = os.path.join(os.path.dirname(sys.executable), 'aim')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def aim_up(repo: str, timeout: float = 60.0) -> Iterator[str]:
    """Start ``aim up`` on ``repo``; yield its base URL once ``/api/projects/`` answers; stop it after."""
    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([AIM, 'up', '--repo', repo, '--host', '127.0.0.1', '--port', str(port), '-y'],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)  # its own process group: uvicorn workers go too
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f'aim up exited with {process.returncode}: {_tail(log)}')
            try:
                with urllib.request.urlopen(f'{url}/api/projects/', timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f'aim up did not answer on {url} within {timeout:.0f} s: {_tail(log)}')
            time.sleep(0.3)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def _tail(log, size: int = 2000) -> str:
    log.seek(0)
    return log.read().decode('utf-8', 'replace')[-size:]


def _unframe(body: bytes) -> Iterator[Tuple[bytes, bytes]]:
    offset = 0
    while offset < len(body):
        (key_size,) = struct.unpack_from('I', body, offset)
        key = body[offset + 4: offset + 4 + key_size]
        offset += 4 + key_size
        (value_size,) = struct.unpack_from('I', body, offset)
        value = body[offset + 4: offset + 4 + value_size]
        offset += 4 + value_size
        yield key, value
    assert offset == len(body), 'truncated stream'


def decode_run_search(body: bytes) -> Dict[str, dict]:
    """The streamed answer of ``/api/runs/search/run/`` → ``{run hash: {'props': ..., 'params': ...}}``."""
    from aim.storage.treeutils import decode_tree

    tree = decode_tree(_unframe(body))
    return {key: value for key, value in tree.items() if not key.startswith('progress_')}


def search_runs(url: str, query: str = '', **params) -> Dict[str, dict]:
    """Runs as Aim's UI fetches them (``report_progress`` off: the answer holds runs only)."""
    params = {'q': query, 'report_progress': 'false', **params}
    with urllib.request.urlopen(f'{url}/api/runs/search/run/?{urllib.parse.urlencode(params)}',
                                timeout=60) as response:
        return decode_run_search(response.read())


def render_page(url: str, workdir: str, screenshot: str = None, budget_ms: int = 15000) -> str:
    """The DOM of a page after headless Chromium ran its scripts (``--dump-dom``); optionally a PNG too.

    Every network-touching Chromium feature is off: the test machine is offline and the page is local.
    Dates are rendered in UTC."""
    def chromium(*extra: str) -> subprocess.CompletedProcess:
        profile = tempfile.mkdtemp(dir=workdir, prefix='chromium-profile-')
        command = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                   '--disable-background-networking', '--disable-component-update', '--disable-sync',
                   '--disable-dev-shm-usage', f'--user-data-dir={profile}', f'--virtual-time-budget={budget_ms}',
                   *extra, url]
        # dates in the page follow the browser's time zone: UTC, so that tests can spell them
        return subprocess.run(command, capture_output=True, timeout=120, check=True, env={**os.environ, 'TZ': 'UTC'})

    dom = chromium('--dump-dom').stdout.decode('utf-8', 'replace')
    if screenshot:
        chromium(f'--screenshot={screenshot}', '--window-size=1600,900', '--hide-scrollbars')
    return dom


def run_names_in(dom: str, names: List[str]) -> List[str]:
    """The names that appear in the rendered DOM."""
    return [name for name in names if name in dom]
