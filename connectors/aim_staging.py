"""A new run's two RocksDB databases built on tmpfs, then published into the repo whole: the per-run cost
of the Aim write on a real disk.

Why: created in the repo on ext4, a run's two databases cost ~10 files each (CURRENT, IDENTITY, LOCK,
LOG, MANIFEST, OPTIONS, the WAL, temp files renamed into place) and ~13 fsync/fdatasync each, which
aimrocks' options do not reach (benchmarks/RESULTS.md, "Per-run cost of the Aim write"). Built in a
staging directory on tmpfs (``/dev/shm``) those cost almost nothing; once closed, only the files a
closed database is read from are copied into the repo (``PUBLISHED``), under a temporary name outside
``chunks/`` (Aim takes every entry of ``chunks/`` for a run), then renamed into place: a run's
database appears whole or not at all. The seqs database is published before the meta one (Aim and
``aim up``'s index manager find runs by their meta directory), and a seqs published alone (the meta's
copy failed) is removed again.

No file is synced when published. Instead ``barrier`` syncs the repo's filesystem once, before the
index step makes the runs visible (``connectors.aim_index.index_runs``). What that leaves:

* a process killed (kill -9, an exception) at any point loses nothing published: the files are in the
  page cache, which outlives the process; a run whose publication did not finish is not in ``chunks/``
  (at worst its temporary copy is, under ``<part>/runferry-publish/``, removed by the next publication
  of that run) and is rewritten by a re-run;
* the machine losing power before the barrier can leave a published, not yet indexed run with empty or
  short files. It is not in the index nor in SQLite (the barrier comes first), so Aim does not list it;
  a re-run finds its directory and rewrites it in place (``LocalRun``'s path for a run already in the
  repo), or fails on it with a dead letter naming the run. A run indexed is a run synced: the index
  never points at an empty run.

When there is no tmpfs, or less than ``MIN_FREE_BYTES`` free on it, runs are built in the repo as before
(``staging_root`` returns None); ``RUNFERRY_AIM_STAGING`` chooses: ``off``, or a directory to use.
A run already in the repo (a re-run) is rewritten in place, as before: its sequences are replaced one
by one, which a fresh copy would not do for sequences the source no longer holds.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from typing import Optional

from connectors import disk_guard
from connectors.local_files import process_alive

__all__ = ['STAGING_ENV', 'MIN_FREE_BYTES', 'PUBLISHED', 'staging_root', 'new_stage', 'publish', 'unpublish',
           'barrier', 'remove_stale_stages', 'StagingFull', 'staging_full']

STAGING_ENV = 'RUNFERRY_AIM_STAGING'
DEFAULT_DIR = '/dev/shm'
# a run's databases live in the staging dir from open to close (a run of 1M points takes ~100 MB there)
MIN_FREE_BYTES = 1 << 30
_PREFIX = 'runferry-stage-'
_PUBLISH_DIR = 'runferry-publish'  # beside chunks/ in each part (meta, seqs) of the repo


class StagingFull(Exception):
    """The staging dir filled while a run was built there: the run was not published (and the repo's
    disk is not full). Later runs of this writer are built in the repo."""


def staging_full(stage: str) -> StagingFull:
    """The error of a run whose stage filled (its own words: not "no space", which would stop the
    conversion as a full repo disk does, ``connectors.disk_guard.is_no_space``)."""
    free = disk_guard.free_bytes(stage)
    left = f'{free / 1e6:,.1f} MB left' if free is not None else 'space left unknown'
    return StagingFull(f'the run outgrew its staging directory {os.path.dirname(stage)} ({left}); '
                       f'set {STAGING_ENV}=off or to a larger directory')


def staging_root(environ=os.environ) -> Optional[str]:
    """Where new runs are built: ``RUNFERRY_AIM_STAGING`` (``off`` for nowhere: in the repo), else
    ``/dev/shm`` when it is a tmpfs-like directory with ``MIN_FREE_BYTES`` free; None for in the repo."""
    chosen = environ.get(STAGING_ENV, '').strip()
    if chosen.lower() == 'off':
        return None
    where = chosen or DEFAULT_DIR
    if not os.path.isdir(where) or not os.access(where, os.W_OK | os.X_OK):
        if chosen:
            raise ValueError(f'{STAGING_ENV}={chosen}: not a writable directory')
        return None
    if not chosen and (disk_guard.free_bytes(where) or 0) < MIN_FREE_BYTES:
        return None
    return where


def new_stage(root: str) -> str:
    """A fresh directory under ``root`` for one run's databases, named after this process (so that
    ``remove_stale_stages`` can tell a dead writer's leftovers)."""
    return tempfile.mkdtemp(prefix=f'{_PREFIX}{os.getpid()}-', dir=root)


def remove_stale_stages(root: str) -> None:
    """Remove the stages of writer processes that are gone (killed mid-run: tmpfs holds them in memory
    until removed)."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(_PREFIX):
            continue
        pid = name[len(_PREFIX):].split('-', 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _published(name: str, path: str) -> bool:
    """Whether a closed database's file ``name`` goes into the repo: the files it is read from, its
    CURRENT, MANIFEST and table files. Not IDENTITY and OPTIONS (a read-only open, Aim's and ``aim up``'s,
    needs neither; a read-write open makes them again: ``tests/test_staged_run.py``), whose two copies
    a database cost a small run's write more than its data did on ext4 (a file created on the repo's
    disk is the expensive part of a copy); not LOCK and LOG (made by whoever opens it next), nor an
    empty write-ahead log (the close flushed the memtable; a non-empty one would be copied)."""
    if name == 'CURRENT' or name.startswith('MANIFEST-') or name.endswith('.sst'):
        return True
    return name.endswith('.log') and os.path.getsize(path) > 0


PUBLISHED = _published


def publish(staged: str, target: str) -> None:
    """Copy the closed database at ``staged`` into the repo as ``target`` (``<part>/chunks/<hash>``): its
    files copied into ``<part>/runferry-publish/<hash>``, then that directory renamed to ``target``. No
    fsync (see the module: ``barrier``). Raises if ``target`` exists."""
    chunks = os.path.dirname(target)
    temporary = os.path.join(os.path.dirname(chunks), _PUBLISH_DIR, os.path.basename(target))
    shutil.rmtree(temporary, ignore_errors=True)  # a publication killed midway
    os.makedirs(temporary)
    try:
        for name in os.listdir(staged):
            source = os.path.join(staged, name)
            if _published(name, source):
                shutil.copyfile(source, os.path.join(temporary, name))
        os.makedirs(chunks, exist_ok=True)
        if os.path.exists(target):  # rename over an empty directory would succeed: refuse it
            raise FileExistsError(errno.EEXIST, 'run database already in the repo', target)
        os.rename(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def unpublish(target: str) -> None:
    """Remove a published database again (its run's other database could not be published)."""
    shutil.rmtree(target, ignore_errors=True)


def barrier(path: str) -> None:
    """Sync the filesystem holding ``path`` (``syncfs``; ``os.sync`` where it is missing): every run
    published before it is on disk after it. Called before the index step makes runs visible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), path)
    finally:
        os.close(fd)
