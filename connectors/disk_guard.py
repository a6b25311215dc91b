"""A full disk must end a conversion within seconds, with one line naming the repo, never hang it.

Why a full disk used to hang: Aim opens every RocksDB database with ``paranoid_checks=False``
(``aim/storage/rockscontainer.pyx``). Under that option RocksDB rates a "no space" error of a
background flush as no error at all (``ErrorHandler``'s severity map: flush + NoSpace + not paranoid
→ ``kNoError``), so the database is never stopped, the flush is retried forever and
``DB::Flush`` — which Aim's ``RocksContainer.close`` calls — waits in ``WaitForFlushMemTables``
forever, whatever signal arrives. Measured here on a 4 MB tmpfs: with the option off, a flush after
a write that fit in the WAL never returned; with it on, the flush returned ``No space left on
device`` at once and the database closed (tests/test_full_disk.py).

So ``install`` turns ``paranoid_checks`` on for every database this process opens for writing
(RocksDB's own default; it checks data as it is written and does not change what is stored), and
``close_containers`` closes a run's containers so that one failing flush neither skips the others
nor leaves the run's progress marker behind. ``is_no_space`` recognizes the error wherever it comes
from (RocksDB, SQLite, a plain ``OSError``), and ``RepoFull`` says so in one line that names the
repo: after it, no later run is tried (each would fail the same way, slowly).
"""
from __future__ import annotations

import errno
import os
from typing import Iterable, Optional

__all__ = ['install', 'is_no_space', 'RepoFull', 'repo_full', 'close_containers', 'free_bytes']

# What "no space" says in the messages of RocksDB (strerror of ENOSPC/EDQUOT) and SQLite
_NO_SPACE_TEXTS = ('no space left on device', 'disk quota exceeded', 'database or disk is full')
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class RepoFull(Exception):
    """The repo's filesystem has no space left: no later run can be written either."""


def is_no_space(error: BaseException) -> bool:
    """Whether ``error`` (or an error it wraps) says the filesystem is full or over quota."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, RepoFull):
            return True
        if isinstance(error, OSError) and error.errno in _NO_SPACE_ERRNOS:
            return True
        if any(text in str(error).lower() for text in _NO_SPACE_TEXTS):
            return True
        error = error.__cause__ or error.__context__
    return False


def free_bytes(path: str) -> Optional[int]:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem (None if unknown)."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def repo_full(repo_path: str, error: BaseException) -> RepoFull:
    """The one-line error that stops the conversion: the repo's path, what is left, the cause."""
    free = free_bytes(repo_path)
    left = f'{free / 1e6:,.1f} MB free' if free is not None else 'free space unknown'
    # SQLAlchemy's errors append the statement and its parameters: the driver's own error says it
    cause = ' '.join(str(getattr(error, 'orig', None) or error).split())
    if len(cause) > 200:
        cause = cause[:199] + '…'
    return RepoFull(f'no space left on the filesystem of the Aim repo {repo_path} ({left}): '
                    f'{type(error).__name__}: {cause}')


def close_containers(containers: Iterable) -> Optional[BaseException]:
    """Close every ``RocksContainer`` (each flushes its memtable), even when one fails; returns the
    first error. A container whose close failed drops its database anyway (RocksDB's destructor
    closes it without another flush) and removes its progress marker (``.aim/progress/<run>``, which
    Aim would otherwise take for a run still being written)."""
    first: Optional[BaseException] = None
    for container in containers:
        try:
            container.close()
        except Exception as error:
            first = first or error
            resources = getattr(container, '_resources', None)
            if resources is not None:
                resources._db = None
                resources._lock = None
                progress = getattr(resources, '_progress_path', None)
                if progress is not None:
                    progress.unlink(missing_ok=True)
                    resources._progress_path = None
    return first


_installed = False


def install() -> None:
    """Open every writable RocksDB database of this process with ``paranoid_checks=True`` (see the
    module's docstring): a flush that finds no space then fails instead of waiting forever. Read-only
    opens are left as Aim makes them. Idempotent."""
    global _installed
    if _installed:
        return
    from aim.storage.rockscontainer import RocksContainer

    aims_db = RocksContainer.db

    def db(self):
        if self._resources._db is None and not self.read_only:
            self._db_opts['paranoid_checks'] = True
        return aims_db.fget(self)

    RocksContainer.db = property(db, doc=aims_db.__doc__)
    _installed = True
