"""Runs' rows as an Aim repo's SQLite store holds them (``run_metadata.sqlite``), read as ``RunProps``.

Read with the standard library's ``sqlite3``, read-only, not through Aim's SQLAlchemy session: the file
may be a copy downloaded from object storage, with no repo around it, and nothing here may write to
it (Aim's ``Repo`` would migrate an older schema in place). The columns read are those of Aim's schema
(``aim.storage.structured.sql_engine.models``): ``run``, ``experiment``, ``tag``, ``run_tag``.
"""
from __future__ import annotations

import datetime
import sqlite3
import urllib.parse
from typing import Dict, Optional

import pytz

from connectors.aim_index import RunProps

__all__ = ['read_run_props', 'timestamp_of']


def read_run_props(sqlite_path: str) -> Dict[str, RunProps]:
    """``{run hash: RunProps}`` for every run row: name, experiment, description, tags (sorted), archived
    flag, creation and finalization times. Raises ``sqlite3.DatabaseError`` for a file that is not an
    Aim SQLite store."""
    uri = 'file:' + urllib.parse.quote(sqlite_path) + '?mode=ro'
    connection = sqlite3.connect(uri, uri=True)
    try:
        tags: Dict[int, list] = {}
        for run_id, tag_name in connection.execute(
                'SELECT run_tag.run_id, tag.name FROM run_tag JOIN tag ON tag.id = run_tag.tag_id'):
            tags.setdefault(run_id, []).append(tag_name)
        props = {}
        for run_id, run_hash, name, description, archived, created, finalized, experiment in connection.execute(
                'SELECT run.id, run.hash, run.name, run.description, run.is_archived, run.created_at, '
                'run.finalized_at, experiment.name FROM run LEFT JOIN experiment ON experiment.id = run.experiment_id'):
            props[run_hash] = RunProps(
                hash=run_hash, name=name, experiment=experiment, description=description,
                tags=tuple(sorted(tags.get(run_id, ()))), created_at=timestamp_of(created),
                finalized_at=timestamp_of(finalized), archived=None if archived is None else bool(archived))
        return props
    finally:
        connection.close()


def timestamp_of(text: Optional[str]) -> Optional[float]:
    """A naive UTC datetime as Aim's rows hold it (``2026-11-29 18:44:40.123456``) → a POSIX timestamp
    (which ``connectors.aim_repo.utc_datetime`` turns back into the same datetime, to the microsecond)."""
    if text is None:
        return None
    return datetime.datetime.fromisoformat(str(text)).replace(tzinfo=pytz.utc).timestamp()
