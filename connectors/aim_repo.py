"""Opening an Aim repo (a local path or ``aim://host:port``), and the one time conversion Aim's rows need."""
from __future__ import annotations

import datetime
import os
from typing import Optional

import pytz

from aim.sdk.repo import Repo

__all__ = ['open_repo', 'is_remote', 'utc_datetime']


def is_remote(repo: str) -> bool:
    return repo.startswith('aim://')


def open_repo(repo: str, create: bool = True) -> Repo:
    if is_remote(repo):
        return Repo.from_path(repo)
    return Repo.from_path(os.path.abspath(repo), init=create)


def utc_datetime(timestamp: Optional[float]) -> Optional[datetime.datetime]:
    """A POSIX timestamp as the naive UTC datetime Aim's SQLite rows hold (``created_at``, ``finalized_at``)."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=pytz.utc).replace(tzinfo=None)
