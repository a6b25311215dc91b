"""Putting a whole run's containers into a local Aim repo that may be in use (an ``aim up`` serving it):
staged beside, compared, and renamed into place, so that no half-copied run is ever visible.

A run is visible to Aim when its meta container, ``.aim/meta/chunks/<hash>``, exists: ``Repo`` lists
runs from that directory, and ``aim up``'s index manager indexes every directory that appears there
(within seconds: it watches the directory). So a run is copied first into a staging directory on the
target's own filesystem, ``.aim/.runferry-merge/<hash>.<pid>.<n>/{meta,seqs}`` (not under
``meta/chunks``, where Aim would take it for a run), each file flushed to disk; then its seqs
container is renamed into ``seqs/chunks/<hash>``, then its meta container into ``meta/chunks/<hash>``:
``rename`` is atomic, and until the second one the run is not there at all. A process killed between
the two leaves only a seqs container that no run refers to: the next ``install`` of the same run finds
it equal to its own and keeps it. Staging directories of processes that are gone are removed by
``clear_stale_staging`` (only those: another merge may be staging right now).

Two containers are equal when their RocksDB records are (``same_records``), read through a read-only
``aimrocks.DB``, which writes nothing (Aim's own read-only ``RocksContainer`` may rewrite a database
that has a write-ahead log). Their files are not compared: two copies of one run differ in file numbers,
``IDENTITY`` and logs.
"""
from __future__ import annotations

import errno
import itertools
import os
import shutil
from typing import Iterable, Iterator, Optional, Set, Tuple

import aimrocks

from aim.storage import encoding

from connectors.local_files import fsync_directory, process_alive

__all__ = ['Staging', 'clear_stale_staging', 'is_present', 'same_records', 'install', 'indexed_hashes',
           'Conflict', 'STAGING_DIR']

STAGING_DIR = '.runferry-merge'  # under the target's .aim
CONTAINER_KINDS = ('meta', 'seqs')


class Conflict(Exception):
    """The target holds a container of this run's hash with other records: nothing was replaced."""


class Staging:
    """One run's staging directory in the target repo; ``remove`` removes whatever was not renamed into
    place (so does the end of a ``with`` block)."""

    _counter = itertools.count()

    def __init__(self, aim_dir: str, run_hash: str):
        root = os.path.join(aim_dir, STAGING_DIR)
        os.makedirs(root, exist_ok=True)
        self.path = os.path.join(root, f'{run_hash}.{os.getpid()}.{next(self._counter)}')
        os.mkdir(self.path)

    def container(self, kind: str) -> str:
        return os.path.join(self.path, kind)

    def __enter__(self) -> 'Staging':
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def clear_stale_staging(aim_dir: str) -> int:
    """Remove the staging directories left by merges that are no longer running (a ``kill -9``); the
    number removed. A directory's name carries its process id."""
    root = os.path.join(aim_dir, STAGING_DIR)
    removed = 0
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        parts = name.split('.')
        if len(parts) == 3 and parts[1].isdigit() and not process_alive(int(parts[1])):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed += 1
    return removed


def target_container(aim_dir: str, kind: str, run_hash: str) -> str:
    return os.path.join(aim_dir, kind, 'chunks', run_hash)


def is_present(aim_dir: str, run_hash: str) -> bool:
    """Whether the target holds a run of this hash (its meta container: what Aim lists runs by)."""
    return os.path.lexists(target_container(aim_dir, 'meta', run_hash))


def install(aim_dir: str, run_hash: str, staging: Staging) -> bool:
    """Rename the staged containers into place: seqs, then meta (the moment the run appears); True if
    the run was not in the target before. A container of this hash already in the target is kept if it
    holds the same records as the staged one (the run merged before, a merge interrupted between the
    two renames, or one racing this one); otherwise ``Conflict``, and nothing of the target changes.
    (A run with no sequence at all may have no seqs container: then the target must have none either.)"""
    for kind in ('seqs', 'meta'):  # checked first: a conflict must leave the target as it was
        staged, target = staging.container(kind), target_container(aim_dir, kind, run_hash)
        if os.path.lexists(target) and not (os.path.isdir(staged) and same_records(staged, target)):
            raise Conflict(f'{kind}/chunks/{run_hash} exists in the target with other records')
    placed = False
    for kind in ('seqs', 'meta'):
        staged, target = staging.container(kind), target_container(aim_dir, kind, run_hash)
        if not os.path.isdir(staged) or os.path.lexists(target):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if _rename_if_absent(staged, target):
            fsync_directory(os.path.dirname(target))
            placed = placed or kind == 'meta'
        elif not same_records(staged, target):  # another merge placed it meanwhile
            raise Conflict(f'{kind}/chunks/{run_hash} exists in the target with other records')
    return placed


def _rename_if_absent(source: str, target: str) -> bool:
    """``os.rename``, unless ``target`` appeared meanwhile (another merge): False then. (A directory is
    renamed over an existing one only if that one is empty; a non-empty one makes the call fail.)"""
    try:
        os.rename(source, target)
        return True
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise


def same_records(path_a: str, path_b: str) -> bool:
    """Whether two RocksDB databases hold the same (key, value) records."""
    sentinel = object()
    for a, b in itertools.zip_longest(_records(path_a), _records(path_b), fillvalue=sentinel):
        if a != b:
            return False
    return True


def _records(path: str) -> Iterator[Tuple[bytes, bytes]]:
    # The database is closed when the last reference to it goes, the iterator's included: closing it
    # explicitly under a live iterator crashes the process (RocksDB frees what the iterator reads).
    iterator = aimrocks.DB(path, aimrocks.Options(create_if_missing=False), read_only=True).iteritems()
    iterator.seek_to_first()
    yield from iterator


def indexed_hashes(aim_dir: str, run_hashes: Iterable[str]) -> Set[str]:
    """Which of these runs the target's index holds (any record under ``meta/chunks/<hash>``), read
    without taking the index's lock (an ``aim up`` may hold it)."""
    index = os.path.join(aim_dir, 'meta', 'index')
    if not os.path.isdir(index):
        return set()
    db = aimrocks.DB(index, aimrocks.Options(create_if_missing=False), read_only=True)
    found = set()
    for run_hash in run_hashes:  # (the database closes with its last reference, as in _records)
        prefix = encoding.encode_path(('meta', 'chunks', run_hash))
        keys = db.iterkeys()
        keys.seek(prefix)
        first: Optional[bytes] = next(keys, None)
        if first is not None and first.startswith(prefix):
            found.add(run_hash)
    return found
