"""One retry policy for every call to storage, the MLflow server and the Aim server.

A call that fails with a *transient* error (``is_transient``: connection refused/reset, timeouts, HTTP
408/429/5xx and the libraries' names for them) is tried again after an exponentially growing, jittered
wait (Beam's ``FuzzedExponentialIntervals``: 0.5 s, 1 s, 2 s, ... each cut to 50-100 %, at most 30 s).
It stops after ``RUNFERRY_RETRY_ATTEMPTS`` attempts (default 6) or when the next wait would end past
``RUNFERRY_RETRY_MAX_SECONDS`` (default 120) since the first attempt, and raises ``RetriesExhausted``:
an ``OSError`` whose one-line message names the resource and the last error::

    s3://bucket/logs/run/events.out.tfevents.1.host unreachable after 6 attempts over 14.2 s:
    EndpointConnectionError: Could not connect to the endpoint URL: "http://…"

Anything else (file not found, permission denied, other 4xx, bad data) is raised at once, unchanged.
The knobs (also ``RUNFERRY_RETRY_INITIAL_SECONDS``, default 0.5) are read at each call, so workers and
tests see what the environment says. Each retry is one warning line (no traceback) and counts in the
``runferry/retries`` Beam counter when it happens inside a DoFn.

What the libraries underneath already retry (read in the installed versions and measured against a
refused port), and how this layer sits on them:

* botocore (under s3fs): "legacy" mode, 5 attempts for connection errors, throttling and 5xx; a refused
  endpoint fails after ~8 s with ``EndpointConnectionError``. ``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE`` tune it.
* s3fs 2026.9: its own 5 tries (0.1 s x 1.7^i) for read timeouts, cut bodies and "SlowDown", not for
  connection errors (botocore's job); other S3 errors become ``OSError``s with the ``ClientError`` as cause.
* gcsfs 2026.10: 6 tries (1, 2, 4, 8, 16 s + jitter) for connection errors and 408/429/5xx: ~33 s a call.
* MLflow 3.17's REST client: urllib3 retries, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` = 7 with backoff factor
  2 on connection errors and 408/429/5xx: about 4 minutes per request before ``MlflowException``. Under
  this layer that would be ~25 minutes for a dead server, so ``MlflowSource`` lowers it to 2 (~4.6 s)
  unless the user set it.
* Aim: ``check_server`` uses urllib (no retries). Aim's remote client raises ``requests`` errors for
  what it asks over HTTP, but a queued websocket write that fails is retried in its background thread
  (twice, 100 ms apart, then put back at the head of the queue): it waits for the server, unbounded.

So the libraries absorb blips of a few seconds per request, and this layer, around whole idempotent
calls, waits out longer ones: with the defaults, 7.75-15.5 s of its own waiting plus the libraries'
per attempt, i.e. a dead endpoint is given up on after about a minute on S3 (botocore's ~8 s an
attempt), ~45 s for MLflow, ~2 minutes on GCS (the budget) and ~15 s for an Aim server check. The
budget bounds the total: at most ``RUNFERRY_RETRY_MAX_SECONDS`` plus one library-level call.
"""
from __future__ import annotations

import dataclasses
import http.client
import logging
import os
import re
import sys
import time
from typing import Any, Callable, Optional, Tuple, TypeVar, Union

from apache_beam.utils.retry import FuzzedExponentialIntervals

from connectors.redact import MaskingFilter, mask_text

__all__ = ['RetryPolicy', 'RetriesExhausted', 'call_with_retry', 'is_transient', 'one_line', 'TRANSIENT_STATUS']

log = logging.getLogger('runferry.retry')
log.addFilter(MaskingFilter())  # its lines name resources (URIs); masked in worker processes too
T = TypeVar('T')

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Error codes that services send with a 4xx/5xx when they mean "slow down" or "try again".
_TRANSIENT_CODES = frozenset({
    'SlowDown', 'Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'RequestTimeout',
    'InternalError', 'ServiceUnavailable', 'TEMPORARILY_UNAVAILABLE', 'REQUEST_LIMIT_EXCEEDED',
    'RESOURCE_EXHAUSTED',
})
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                        FileExistsError)
_MAX_DELAY = 30.0


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_seconds: float = 0.5
    max_seconds: float = 120.0

    @classmethod
    def from_env(cls) -> 'RetryPolicy':
        def number(name, kind, default):
            text = os.environ.get(name, '').strip()
            try:
                return kind(text) if text else default
            except ValueError:
                raise ValueError(f'{name}={text!r} is not a number') from None

        return cls(attempts=max(1, number('RUNFERRY_RETRY_ATTEMPTS', int, cls.attempts)),
                   initial_seconds=max(0.0, number('RUNFERRY_RETRY_INITIAL_SECONDS', float, cls.initial_seconds)),
                   max_seconds=max(0.0, number('RUNFERRY_RETRY_MAX_SECONDS', float, cls.max_seconds)))

    def waits(self):
        return iter(FuzzedExponentialIntervals(self.initial_seconds, self.attempts - 1, factor=2, fuzz=0.5,
                                               max_delay_secs=_MAX_DELAY))


class RetriesExhausted(OSError):
    """A transient error that outlasted the retry policy; ``str()`` is one line naming the resource."""

    def __init__(self, resource: str, attempts: int, elapsed: float, last_error: Union[BaseException, str]):
        self.resource, self.attempts, self.elapsed = resource, attempts, elapsed
        self.last_error = last_error if isinstance(last_error, str) else one_line(last_error)
        plural = '' if attempts == 1 else 's'
        super().__init__(f'{resource} unreachable after {attempts} attempt{plural} over {elapsed:.1f} s: '
                         f'{self.last_error}')

    def __reduce__(self):  # picklable (Beam may move it between processes)
        return RetriesExhausted, (self.resource, self.attempts, self.elapsed, self.last_error)


def one_line(error: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line (whitespace collapsed, secrets masked before it is cut), cut to
    ``limit`` characters."""
    text = mask_text(' '.join(str(error).split()) or repr(error))
    text = f'{type(error).__name__}: {text}'
    return text if len(text) <= limit else text[:limit - 1] + '…'


def call_with_retry(fn: Callable[..., T], *args: Any, resource: str, policy: Optional[RetryPolicy] = None,
                    **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, tried again on transient errors as the policy (default: from the
    environment) says; ``RetriesExhausted`` naming ``resource`` when they last. ``fn`` must be safe to
    call again (a read, or an idempotent write)."""
    policy = policy or RetryPolicy.from_env()
    waits = policy.waits()
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            if not is_transient(error):
                raise
            elapsed = time.monotonic() - started
            wait = next(waits, None)
            if wait is None or elapsed + wait > policy.max_seconds:
                raise RetriesExhausted(resource, attempt, elapsed, error) from error
            log.warning('%s: %s; attempt %d of %d failed, retrying in %.1f s', resource, one_line(error, 200),
                        attempt, policy.attempts, wait)
            _count_retry()
            time.sleep(wait)


def _count_retry() -> None:
    try:
        from apache_beam.metrics import Metrics
        Metrics.counter('runferry', 'retries').inc()  # a no-op outside a DoFn
    except Exception:  # counting must never turn a retry into a failure
        pass


# ---------------------------------------------------------------------------------------------- transient?

# module -> (its errors that are always transient, its errors that are when their HTTP status is). Looked
# up in sys.modules, never imported: an error can only come from a library that is loaded, and importing
# one here would cost seconds (mlflow) or change how it behaves (gcsfs reads its settings at import).
_LIBRARY_ERRORS = {
    'botocore.exceptions': (('ConnectionError', 'HTTPClientError', 'ReadTimeoutError', 'ConnectTimeoutError'),
                            ('ClientError',)),
    'aiohttp': (('ClientConnectionError', 'ClientPayloadError', 'ServerTimeoutError'), ('ClientResponseError',)),
    'requests.exceptions': (('ConnectionError', 'Timeout', 'ChunkedEncodingError', 'RetryError'), ('HTTPError',)),
    'urllib3.exceptions': (('ProtocolError', 'NewConnectionError', 'TimeoutError'), ()),
    'fsspec.exceptions': (('FSTimeoutError',), ()),
    'gcsfs.retry': ((), ('HttpError',)),
    'websockets.exceptions': (('ConnectionClosed',), ()),
}


def _library_errors() -> Tuple[tuple, tuple]:
    always, by_status = [], []
    for module_name, (transient, with_status) in _LIBRARY_ERRORS.items():
        module = sys.modules.get(module_name)
        if module is not None:
            always += [getattr(module, name) for name in transient if hasattr(module, name)]
            by_status += [getattr(module, name) for name in with_status if hasattr(module, name)]
    return tuple(always), tuple(by_status)


def _status(error: BaseException) -> Tuple[Optional[int], Optional[str]]:
    """The HTTP status and service error code an error carries, where it carries them."""
    response = getattr(error, 'response', None)
    if isinstance(response, dict):  # botocore ClientError
        code = (response.get('Error') or {}).get('Code')
        status = (response.get('ResponseMetadata') or {}).get('HTTPStatusCode')
        return (int(status) if status else None), code
    status = getattr(response, 'status_code', None)  # requests
    if status is None:
        status = getattr(error, 'status', None)  # aiohttp
    if status is None:
        status = getattr(error, 'code', None)  # urllib, gcsfs
    try:
        return int(status), None
    except (TypeError, ValueError):
        return None, None


def _mlflow_transient(error: BaseException) -> Optional[bool]:
    module = sys.modules.get('mlflow.exceptions')
    if module is None or not isinstance(error, module.MlflowException):
        return None
    if error.error_code in _TRANSIENT_CODES:
        return True
    if isinstance(error, module.RestException):  # the server answered with a JSON error
        return error.get_http_status_code() in TRANSIENT_STATUS
    match = re.search(r'failed with error code (\d{3})', str(error))  # a non-JSON answer (a proxy's 502...)
    if match:
        return int(match.group(1)) in TRANSIENT_STATUS
    return None  # e.g. "API request ... failed with exception ...": look at the cause


def is_transient(error: BaseException, _depth: int = 0) -> bool:
    """Whether trying the same call again later may succeed: the network or the server was briefly
    unavailable, or asked the client to slow down. Not found, forbidden, other 4xx, bad data: no."""
    if isinstance(error, RetriesExhausted) or _depth > 5:
        return False
    if isinstance(error, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(error, (ConnectionError, TimeoutError, http.client.IncompleteRead)):
        return True  # refused, reset, aborted, broken pipe, timed out, a response cut short
    always, by_status = _library_errors()
    if isinstance(error, always):
        return True
    import urllib.error
    if isinstance(error, (urllib.error.HTTPError, *by_status)):
        status, code = _status(error)
        return status in TRANSIENT_STATUS or code in _TRANSIENT_CODES
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return isinstance(reason, BaseException) and is_transient(reason, _depth + 1)
    verdict = _mlflow_transient(error)
    if verdict is not None:
        return verdict
    if isinstance(error, RuntimeError) and 'Failed to connect to Aim Server' in str(error):
        return True  # Aim's client turns requests.ConnectionError into this
    # Wrappers (MlflowException, s3fs's translated OSError, RuntimeError): judge by what they wrap.
    wrapped = error.__cause__ or error.__context__
    if wrapped is not None and (type(error) in (OSError, RuntimeError) or _is_mlflow(error)):
        return is_transient(wrapped, _depth + 1)
    return False


def _is_mlflow(error: BaseException) -> bool:
    return any(cls.__module__.startswith('mlflow') for cls in type(error).__mro__)
