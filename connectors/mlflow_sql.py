"""Metric points written straight into the tables of an MLflow SQL store (SQLite, PostgreSQL, MySQL), in bulk.

``MlflowClient.log_batch`` on a SQL store builds one ORM object per point and flushes them, then reads
and updates ``latest_metrics`` through the ORM: measured here (profiled, SQLite), ~90 % of its time is
SQLAlchemy's unit of work, not the database. This writes the same rows with SQLAlchemy Core, in one
``executemany`` per batch of points, through the store's own engine and MLflow's own table definitions
(``mlflow.store.tracking.dbmodels.models``: whatever schema the installed MLflow migrated the database
to), and keeps the tables consistent exactly as the store does:

* ``metrics``: one row per point (``key, value, timestamp, step, is_nan, run_uuid``); NaN is stored as
  value 0 with ``is_nan``, ±inf as ±1.797e308 (``SqlAlchemyStore.sanitize_metric_value``);
* ``latest_metrics``: per key, the point greatest by (step, timestamp, value), compared with the row
  already there (``SqlAlchemyStore._update_latest_metrics_if_necessary``), in the same transaction.

A batch is one transaction: it is written whole or not at all. Only a run's own writer writes its
metrics (one worker a run), and the caller sends only points the run does not hold (read with
``history``), so no primary key is ever violated. Used for SQL stores opened directly; a tracking
server (``http(s)://``) is written through ``log_batch``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Set, Tuple

__all__ = ['SqlMetricWriter', 'BULK_ROWS', 'sanitize']

BULK_ROWS = 20_000  # points a transaction
_SQL_MAX = 1.7976931348623157e308

# (key, value, timestamp ms, step)
Row = Tuple[str, float, int, int]


def sanitize(value: float) -> Tuple[bool, float]:
    """(is_nan, the value stored) as MLflow's SQL store keeps a metric value."""
    if math.isnan(value):
        return True, 0.0
    if math.isinf(value):
        return False, _SQL_MAX if value > 0 else -_SQL_MAX
    return False, float(value)


class SqlMetricWriter:
    """Bulk metric writes into the SQL store behind an ``MlflowClient``."""

    def __init__(self, engine):
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

        self.engine = engine
        self.metrics = SqlMetric.__table__
        self.latest = SqlLatestMetric.__table__

    @classmethod
    def for_client(cls, client) -> Optional['SqlMetricWriter']:
        """The writer for the client's store when it is a SQL store opened directly, else None."""
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store  # the store MlflowClient itself writes through
        return cls(store.engine) if isinstance(store, SqlAlchemyStore) else None

    def history(self, run_id: str) -> Dict[str, Set[Tuple[int, int, Any]]]:
        """Every point the run holds: key → {(step, timestamp, value as stored; 'nan' for NaN)}, in one query."""
        import sqlalchemy as sa

        table = self.metrics
        held: Dict[str, Set[Tuple[int, int, Any]]] = {}
        query = sa.select(table.c.key, table.c.step, table.c.timestamp, table.c.value, table.c.is_nan).where(
            table.c.run_uuid == run_id)
        with self.engine.connect() as connection:
            self._wait_for_locks(connection)
            for key, step, timestamp, value, is_nan in connection.execute(query):
                held.setdefault(key, set()).add((int(step), int(timestamp), 'nan' if is_nan else float(value)))
        return held

    def _wait_for_locks(self, connection) -> None:
        """On SQLite, wait up to 20 s for another writer's lock, as MLflow's own sessions do (its
        ``PRAGMA busy_timeout``), instead of failing at once with "database is locked"."""
        if self.engine.dialect.name == 'sqlite':
            connection.exec_driver_sql('PRAGMA busy_timeout = 20000')

    def write(self, run_id: str, rows: List[Row]) -> None:
        """Insert the points ``rows`` (none of which the run holds) and bring ``latest_metrics`` up to date."""
        import sqlalchemy as sa

        if not rows:
            return
        records = []
        newest: Dict[str, Tuple[int, int, float, bool]] = {}  # key -> (step, timestamp, stored value, is_nan)
        for key, value, timestamp, step in rows:
            is_nan, stored = sanitize(value)
            records.append({'key': key, 'value': stored, 'timestamp': timestamp, 'step': step, 'is_nan': is_nan,
                            'run_uuid': run_id})
            candidate = (step, timestamp, stored, is_nan)
            if key not in newest or candidate[:3] > newest[key][:3]:
                newest[key] = candidate
        latest = self.latest
        with self.engine.begin() as connection:
            self._wait_for_locks(connection)
            connection.execute(self.metrics.insert(), records)
            keys = sorted(newest)
            held = {}
            for start in range(0, len(keys), 500):  # bounded IN lists, as the store does
                query = sa.select(latest.c.key, latest.c.step, latest.c.timestamp, latest.c.value).where(
                    latest.c.run_uuid == run_id, latest.c.key.in_(keys[start:start + 500]))
                held.update({key: (int(step), int(timestamp), float(value))
                             for key, step, timestamp, value in connection.execute(query)})
            inserts = []
            for key in keys:
                step, timestamp, stored, is_nan = newest[key]
                values = {'step': step, 'timestamp': timestamp, 'value': stored, 'is_nan': is_nan}
                if key not in held:
                    inserts.append({'key': key, 'run_uuid': run_id, **values})
                elif (step, timestamp, stored) > held[key]:
                    connection.execute(latest.update().where(latest.c.run_uuid == run_id, latest.c.key == key)
                                       .values(**values))
            if inserts:
                connection.execute(latest.insert(), inserts)
