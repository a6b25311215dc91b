"""Checks on a remote Aim tracking server (``aim://host:port``) before a pipeline starts.

Workers reach the server through Aim's own client (``Repo.from_path('aim://…')``); when nothing answers
there, that client fails inside a worker with a long traceback, after the source has been read. The
launcher calls ``check_server`` first, so the user gets one line naming the server instead.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Tuple

__all__ = ['parse_aim_url', 'check_server', 'server_version']


def _usage_error(message: str) -> Exception:
    from pipelines.common import UsageError  # imported late: pipelines imports connectors

    return UsageError(message)


def parse_aim_url(url: str) -> Tuple[str, int]:
    """``aim://HOST:PORT`` → (host, port); anything else is a usage error naming the flag."""
    hostport = url[len('aim://'):].rstrip('/') if url.startswith('aim://') else ''
    host, _, port = hostport.rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _usage_error(f'--repo {url} is not of the form aim://HOST:PORT')
    return host, int(port)


def server_version(url: str, timeout: float = 5.0) -> str:
    """The Aim version the server at ``aim://HOST:PORT`` reports (the endpoint Aim's client asks).

    Tries http, then https, as Aim's client does. Raises ``OSError`` when nothing answers and
    ``ValueError`` when something answers that is not an Aim tracking server."""
    host, port = parse_aim_url(url)
    last_error: Exception = OSError('no answer')
    for scheme in ('http', 'https'):
        endpoint = f'{scheme}://{host}:{port}/client/get-version/'
        try:
            with urllib.request.urlopen(endpoint, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            raise ValueError(f'HTTP {error.code} from {endpoint}') from None
        except (OSError, ValueError) as error:  # refused, timed out, TLS spoken to plain HTTP...
            last_error = error
            continue
        try:
            return str(json.loads(body)['version'])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f'unexpected answer from {endpoint}') from None
    raise last_error


def check_server(url: str, timeout: float = 5.0) -> None:
    """Fail with one line naming the server when no Aim tracking server answers at its address."""
    try:
        server_version(url, timeout=timeout)
    except ValueError as error:
        raise _usage_error(f'--repo {url}: not an Aim tracking server ({error})') from None
    except OSError as error:
        reason = getattr(error, 'reason', None) or error
        reason = getattr(reason, 'strerror', None) or reason
        raise _usage_error(f'--repo {url}: Aim server is not reachable ({reason})') from None
