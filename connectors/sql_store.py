"""A database server behind an MLflow tracking URI (PostgreSQL, MySQL, SQL Server), answered before
MLflow is given the URI.

MLflow opens such a store by creating a SQLAlchemy engine in a loop of its own that cannot be tuned:
ten attempts with waits of 0.1 s x (2^n - 1), about 100 s of warnings for a server that is down or a
host name with a typo, and each caller's retries multiply that. One connection made here first, with
a connect timeout and runferry's own retry policy (``connectors.retry``) for what looks like the
network, fails in seconds with one line naming the store, its password masked; a refused login is
not retried.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional

from connectors.redact import mask_uri
from connectors.retry import call_with_retry, one_line

__all__ = ['is_database_server_uri', 'unreachable_database', 'CONNECT_TIMEOUT_SECONDS']

CONNECT_TIMEOUT_SECONDS = 10
_SERVER_DIALECTS = ('postgresql', 'mysql', 'mssql')
# how the drivers say that the server could not be reached (as opposed to a refused login, a missing
# database, a bad option): worth another attempt
_UNREACHABLE = re.compile(r'connection refused|could not connect|can\'t connect|timeout expired|timed out|'
                          r'connection reset|server closed the connection|network is unreachable|'
                          r'no route to host|could not translate host name|name or service not known|'
                          r'temporary failure in name resolution', re.I)


def is_database_server_uri(uri: str) -> bool:
    """``postgresql://…``, ``postgresql+psycopg2://…``, ``mysql+pymysql://…``, ``mssql+pyodbc://…``."""
    scheme, separator, _ = (uri or '').strip().partition('://')
    return bool(separator) and scheme.split('+', 1)[0].lower() in _SERVER_DIALECTS


def unreachable_database(uri: str, timeout_seconds: float = CONNECT_TIMEOUT_SECONDS) -> Optional[str]:
    """Why the database server of ``uri`` cannot be used (one line, secrets masked), or None when it
    answers a connection, or when ``uri`` names no database server (files, SQLite, HTTP: not checked
    here)."""
    if not is_database_server_uri(uri):
        return None
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    masked = mask_uri(uri.strip())
    try:
        engine = sqlalchemy.create_engine(uri.strip(), poolclass=NullPool,
                                          connect_args=_timeout_args(uri, timeout_seconds))
    except Exception as error:  # an unknown driver, a malformed URI
        return f'cannot open {masked}: {one_line(error)}'
    try:
        call_with_retry(_connect, engine, resource=f'database {masked}')
    except Exception as error:
        return f'cannot connect to {masked}: {one_line(_innermost(error))}'
    finally:
        engine.dispose()
    return None


def _connect(engine: Any) -> None:
    import sqlalchemy.exc

    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.OperationalError as error:
        if _UNREACHABLE.search(str(error)):
            raise ConnectionError(_driver_message(error)) from error  # transient for connectors.retry
        raise


def _timeout_args(uri: str, timeout_seconds: float) -> Dict[str, Any]:
    dialect = uri.strip().partition('://')[0].split('+', 1)[0].lower()
    if dialect in ('postgresql', 'mysql'):  # libpq's and the MySQL drivers' name for it
        return {'connect_timeout': int(max(1, timeout_seconds))}
    return {}


def _driver_message(error: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's "(Background on this error at …)" trailer."""
    original = getattr(error, 'orig', None)
    return one_line(original if original is not None else error)


def _innermost(error: BaseException) -> BaseException:
    """``RetriesExhausted`` already names the last error; other errors are reported as the driver said."""
    original = getattr(error, 'orig', None)
    return original if original is not None else error
