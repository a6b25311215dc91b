"""Checks on a remote Aim tracking server (``aim://host:port``) before a pipeline starts.

Workers reach the server through Aim's own client (``Repo.from_path('aim://…')``); when nothing answers
there, that client fails inside a worker with a long traceback, after the source has been read. The
launcher calls ``check_server`` first, so the user gets one line naming the server instead. A server
that does not answer yet (restarting, briefly unreachable) is asked again as ``connectors.retry`` says.
"""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Tuple

from connectors.retry import TRANSIENT_STATUS, RetriesExhausted, call_with_retry, is_transient

__all__ = ['parse_aim_url', 'check_server', 'server_version', 'ServerUnusable']


class ServerUnusable(Exception):
    """No Aim tracking server can be used at the ``--repo`` address: the message is the one line that
    says why (the Aim destination makes it a usage error)."""


def parse_aim_url(url: str) -> Tuple[str, int]:
    """``aim://HOST:PORT`` → (host, port); anything else is a usage error naming the flag."""
    hostport = url[len('aim://'):].rstrip('/') if url.startswith('aim://') else ''
    host, _, port = hostport.rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServerUnusable(f'--repo {url} is not of the form aim://HOST:PORT')
    return host, int(port)


def server_version(url: str, timeout: float = 5.0) -> str:
    """The Aim version the server at ``aim://HOST:PORT`` reports (the endpoint Aim's client asks).

    Tries http, then https, as Aim's client does. Raises ``OSError`` when nothing answers or the answer
    is a transient HTTP error (408, 429, 5xx), and ``ValueError`` when something answers that is not an
    Aim tracking server."""
    host, port = parse_aim_url(url)
    errors = []
    for scheme in ('http', 'https'):
        endpoint = f'{scheme}://{host}:{port}/client/get-version/'
        try:
            with urllib.request.urlopen(endpoint, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            if error.code in TRANSIENT_STATUS:  # a server starting or overloaded: worth asking again
                raise
            raise ValueError(f'HTTP {error.code} from {endpoint}') from None
        except (OSError, ValueError, http.client.HTTPException) as error:  # refused, timed out, TLS to HTTP...
            if isinstance(error, http.client.HTTPException) and not is_transient(error):
                raise ValueError(f'unexpected answer from {endpoint} ({type(error).__name__})') from None
            errors.append(error)
            continue
        try:
            return str(json.loads(body)['version'])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f'unexpected answer from {endpoint}') from None
    # A transient error wins: refused over http, then a TLS error over https means the server came up
    # between the two (speaking plain HTTP), not that it is something else.
    raise next((e for e in errors if is_transient(e)), errors[-1])


def check_server(url: str, timeout: float = 5.0) -> None:
    """Fail with one line naming the server when no Aim tracking server answers at its address, after
    retrying transient errors (refused, reset, timed out, HTTP 5xx)."""
    try:
        call_with_retry(server_version, url, timeout=timeout, resource=f'Aim server {url}')
    except ValueError as error:
        raise ServerUnusable(f'--repo {url}: not an Aim tracking server ({error})') from None
    except RetriesExhausted as error:
        cause = error.__cause__
        raise ServerUnusable(f'--repo {url}: Aim server is not reachable ({_reason(cause)}; {error.attempts} '
                           f'attempt{"" if error.attempts == 1 else "s"} over {error.elapsed:.1f} s)') from None
    except OSError as error:
        raise ServerUnusable(f'--repo {url}: Aim server is not reachable ({_reason(error)})') from None


def _reason(error) -> str:
    reason = getattr(error, 'reason', None) or error
    return str(getattr(reason, 'strerror', None) or reason)
