"""Checks on a remote Aim tracking server (``aim://host:port``) before a pipeline starts."""
from __future__ import annotations

import socket

__all__ = ['parse_aim_url', 'check_server']


def parse_aim_url(url: str):
    hostport = url[len('aim://'):].rstrip('/')
    host, _, port = hostport.rpartition(':')
    if not host or not port.isdigit():
        from pipelines.common import UsageError
        raise UsageError(f'--repo {url} is not of the form aim://HOST:PORT')
    return host, int(port)


def check_server(url: str, timeout: float = 5.0) -> None:
    """Fail with one line naming the server when nothing answers at its address."""
    from pipelines.common import UsageError

    host, port = parse_aim_url(url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise UsageError(f'--repo {url}: Aim server is not reachable ({error.strerror or error})') from None
