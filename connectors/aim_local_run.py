"""A run in a local Aim repo, opened for runferry's storage path: only what a run is made of.

Why not ``aim.Run`` on a local repo: most of a small run's cost there is fixed (its SQLite props
committed five times, a heartbeat thread, the tracker preloading sequence infos). ``LocalRun`` opens
the run lock and its two RocksDB containers, by hash (so no run-hash function of Aim's is involved),
and leaves the SQLite props to ``connectors.aim_index``. At close it keeps its meta container's records,
packed (``pack_records``), for the index step.
"""
from __future__ import annotations

import datetime
import os
import shutil
from typing import Any, Iterable, List, Optional, Tuple

import pytz

from aim.sdk.repo import Repo
from aim.storage.rockscontainer import RocksContainer

from connectors import aim_staging
from connectors.aim_record_frames import pack_frames, plain_records, unpack_records
from connectors import aim_storage as storage
from connectors.aim_run_container import RunContainer
from connectors import disk_guard

__all__ = ['LocalRun', 'pack_records', 'unpack_records', 'PACK_MAX_BYTES']  # unpack_records: aim_record_frames'


class LocalRun:
    """What ``BasicRun`` opens to write a run in a local repo, and no more: the run lock, the run's
    ``meta`` and ``seqs`` RocksDB containers, and the trees over them, under ``BasicRun``'s attribute
    names (so the sequence writers take either). The trees it leaves are the ones ``BasicRun``
    leaves (checked in tests/test_bulk_write.py); its SQLite props are left to ``index_runs``."""

    read_only = False

    def __init__(self, repo: Repo, run_hash: str, staging: Optional[str] = None):
        """``staging``: a directory (on tmpfs) where a run not yet in the repo is built and from which it
        is published at close (``connectors.aim_staging``); None to build it in the repo."""
        self.hash = run_hash
        self.repo = repo
        self._lock = repo.request_run_lock(run_hash)
        self._lock.lock()
        self._containers: List[RocksContainer] = []
        self._created = [path for path in map(self._path, ('meta', 'seqs')) if not os.path.exists(path)]
        self.meta_records: Optional[bytes] = None
        # the stage this run is built in, when both its databases are new
        self.stage: Optional[str] = None
        try:
            if staging is not None and len(self._created) == 2:
                self.stage = aim_staging.new_stage(staging)
            # opened directly, not through repo.request_container: its pool would hand a closed container
            # back to a later write of the same run in this process
            meta = self._open('meta').tree().subtree('meta')
            seqs = self._open('seqs').tree().subtree('seqs')
        except BaseException:
            try:
                self._release()
            finally:
                self._remove_stage()
            raise
        # the meta trees as the sequence writers assign to them: gathered, committed at close (or when
        # they grow large: a run of many sequences)
        # A container this open created holds nothing to delete: no range deletes before its writes.
        # RocksDB keeps every range tombstone in memory, and a run of 200,000 tags made over a million
        # (two an assignment, several assignments a sequence): 1.1 GB at peak, of which they were about
        # half (measured at 50,000 tags: 565 -> 405 MB).
        replace_meta = self._path('meta') not in self._created
        self.fresh_seqs = self._path('seqs') in self._created  # read by connectors.aim_sequences
        self._meta_records = storage.RecordBatch(self._containers[0])
        self.meta_tree = storage.MetaWrites(self._meta_records, meta.container.prefix, replace_meta)
        self.meta_run_tree = storage.MetaWrites(self._meta_records, meta.subtree(('chunks', run_hash)).container.prefix,
                                                replace_meta)
        self.meta_attrs_tree = storage.MetaWrites(self._meta_records, meta.subtree('attrs').container.prefix,
                                                  replace_meta)
        self.meta_run_attrs_tree = storage.MetaWrites(self._meta_records,
                                                      meta.subtree(('chunks', run_hash, 'attrs')).container.prefix,
                                                      replace_meta)
        self.series_run_trees = {1: seqs.subtree(('chunks', run_hash)), 2: seqs.subtree(('v2', 'chunks', run_hash))}
        try:  # as BasicRun.__init__: a run without attributes still has an (empty) attrs tree
            meta.subtree(('chunks', run_hash, 'attrs')).first_key()
        except (KeyError, StopIteration):
            self[...] = {}

    def _path(self, name: str) -> str:
        """Where the run's database ``name`` is in the repo."""
        return os.path.join(self.repo.path, name, 'chunks', self.hash)

    def _built_at(self, name: str) -> str:
        """Where the run's database ``name`` is written: in its stage, else in the repo."""
        if self.stage is None:
            return self._path(name)
        return os.path.join(self.stage, name, 'chunks', self.hash)

    def _open(self, name: str) -> RocksContainer:
        container = RunContainer(self._built_at(name), read_only=False)
        self._containers.append(container)
        return container

    def discard(self) -> None:
        """Close without writing; containers this run's opening created are removed (a run prepared
        and never written must not appear in the repo)."""
        try:
            self._release()
        finally:
            self._remove_stage()
            for path in self._created:
                shutil.rmtree(path, ignore_errors=True)

    def __setitem__(self, key, value) -> None:
        self.meta_run_attrs_tree[key] = value
        self.meta_attrs_tree[key] = value

    def close(self, end_time: Optional[float]) -> None:
        """Stamp the end time (the source's, else now, as Aim does), keep the meta container's records
        for the index (``meta_records``: the index step then need not reopen the run), and flush and
        close the containers."""
        try:
            if end_time is None:
                end_time = datetime.datetime.now(pytz.utc).timestamp()
            self.meta_run_tree['end_time'] = end_time
            self._meta_records.commit()
            self.meta_records = pack_records(self._containers[0].items())
        except BaseException:
            try:
                self._release()
            finally:
                self._remove_stage()
            raise
        self._release(publish=True)

    def _publish(self) -> None:
        """Copy the run's closed databases from its stage into the repo, seqs first: a meta database
        (what makes Aim list a run) is published only beside its seqs; a seqs published alone is removed."""
        aim_staging.publish(self._built_at('seqs'), self._path('seqs'))
        try:
            aim_staging.publish(self._built_at('meta'), self._path('meta'))
        except BaseException:
            aim_staging.unpublish(self._path('seqs'))
            raise

    def _remove_stage(self) -> None:
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage = None

    def _release(self, publish: bool = False) -> None:
        """Close the containers, publish a staged run if asked and they closed, and release the run lock,
        whatever fails (the stage is removed); then raise the first error."""
        containers, self._containers = self._containers, []
        try:
            error = disk_guard.close_containers(containers)
            if error is not None and self.stage is not None and disk_guard.is_no_space(error):
                error = aim_staging.staging_full(self.stage)
            if publish and error is None and self.stage is not None:
                self._publish()  # under the run lock: no other writer of this run publishes meanwhile
        finally:
            try:
                if publish:
                    self._remove_stage()
            finally:
                self._lock.release()
        if error is not None:
            raise error


def pack_records(items: Iterable[Tuple[bytes, Any]]) -> Optional[bytes]:
    """A container's (key, value) records as one compressed bytes object (``connectors.aim_record_frames``).
    Values stored as blobs come as lazy ``BLOB``s reading through the container: they are loaded now,
    and flagged. None for a container of more than ``PACK_MAX_BYTES`` (a run of many sequences or large
    objects): the index step then reads it from the container, in bounded batches."""
    return pack_frames(plain_records(items), PACK_MAX_BYTES)


PACK_MAX_BYTES = 4 << 20  # a typical run's meta container is ~50 KB
