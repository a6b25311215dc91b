"""An Aim repo read as files, on any fsspec filesystem: a local path, or a prefix on object storage
(``s3://bucket/repo``, ``gs://bucket/repo``) holding an Aim repo's layout (``PREFIX/.aim/...``).

What a whole run is, as files (what Aim's ``Repo._delete_local_run_data`` removes for a run): its two
RocksDB containers, ``.aim/meta/chunks/<hash>/`` and ``.aim/seqs/chunks/<hash>/``, and, while a writer
has it open, ``.aim/{meta,seqs}/progress/<hash>``. Its row is in ``.aim/run_metadata.sqlite``.
Every read is retried on transient storage errors (``connectors.retry``); a file whose copy does not
have the size the listing gave is read again.
"""
from __future__ import annotations

import os
import posixpath
import shutil
from typing import Any, Dict, List, Optional, Set

import fsspec

from connectors.local_files import fsync_directory
from connectors.redact import mask_uri
from connectors.retry import call_with_retry

__all__ = ['RepoFiles', 'NotAnAimRepo', 'CONTAINER_KINDS', 'SQLITE_NAME']

CONTAINER_KINDS = ('meta', 'seqs')  # a run's two containers
SQLITE_NAME = 'run_metadata.sqlite'


class NotAnAimRepo(ValueError):
    """The URL holds no Aim repo (no ``.aim/run_metadata.sqlite`` and ``.aim/meta/chunks``)."""


class RepoFiles:
    """The files of the Aim repo at ``url`` (the directory or prefix that holds ``.aim``)."""

    def __init__(self, url: str, storage_options: Optional[Dict[str, Any]] = None):
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        self.aim_dir = posixpath.join(root.rstrip('/'), '.aim') if root.rstrip('/') else '.aim'
        self.resource = mask_uri(url)

    def check(self) -> None:
        """``NotAnAimRepo`` unless the repo's SQLite store and run directory are there."""
        for part in (SQLITE_NAME, 'meta/chunks'):
            if not self._exists(posixpath.join(self.aim_dir, part)):
                raise NotAnAimRepo(f'{self.resource} is not an Aim repo: it has no .aim/{part}')

    def _exists(self, path: str) -> bool:
        return call_with_retry(self.fs.exists, path, resource=self.resource)

    def run_hashes(self) -> List[str]:
        """The hashes of the repo's runs: the directories of ``.aim/meta/chunks`` (as Aim lists them)."""
        return sorted(self._directories(posixpath.join(self.aim_dir, 'meta', 'chunks')))

    def open_hashes(self) -> Set[str]:
        """Runs a writer had open (and did not close) when the repo was copied: ``{meta,seqs}/progress/<hash>``."""
        found: Set[str] = set()
        for kind in CONTAINER_KINDS:
            progress = posixpath.join(self.aim_dir, kind, 'progress')
            if self._exists(progress):
                found |= {posixpath.basename(entry['name'].rstrip('/')) for entry in self._list(progress)}
        return found

    def has_container(self, kind: str, run_hash: str) -> bool:
        return self._exists(self._container(kind, run_hash))

    def download_sqlite(self, local_path: str) -> None:
        """The repo's SQLite store, copied to ``local_path``."""
        self._download(posixpath.join(self.aim_dir, SQLITE_NAME), local_path, None)

    def download_container(self, kind: str, run_hash: str, local_dir: str) -> int:
        """Every file of one run's container (``kind``: meta or seqs) into ``local_dir`` (made here),
        each flushed to disk (``fsync``); returns the bytes copied. A container holds no subdirectory."""
        os.makedirs(local_dir)
        copied = 0
        for entry in self._list(self._container(kind, run_hash)):
            if entry.get('type') == 'directory':
                raise OSError(f'{self.resource}: unexpected directory {entry["name"]} in a run container')
            name = posixpath.basename(entry['name'])
            self._download(entry['name'], os.path.join(local_dir, name), entry.get('size'))
            copied += entry.get('size') or 0
        fsync_directory(local_dir)
        return copied

    def _container(self, kind: str, run_hash: str) -> str:
        return posixpath.join(self.aim_dir, kind, 'chunks', run_hash)

    def _directories(self, path: str) -> Set[str]:
        return {posixpath.basename(entry['name'].rstrip('/')) for entry in self._list(path)
                if entry.get('type') == 'directory'}

    def _list(self, path: str) -> List[Dict[str, Any]]:
        def list_once() -> List[Dict[str, Any]]:
            self.fs.invalidate_cache(path)
            return self.fs.ls(path, detail=True)

        return call_with_retry(list_once, resource=self.resource)

    def _download(self, remote: str, local_path: str, size: Optional[int]) -> None:
        def copy_once() -> None:
            with self.fs.open(remote, 'rb') as source, open(local_path, 'wb') as target:
                shutil.copyfileobj(source, target, 1 << 20)
                target.flush()
                os.fsync(target.fileno())
            if size is not None and os.path.getsize(local_path) != size:
                raise ConnectionError(f'{remote}: {os.path.getsize(local_path)} bytes read of {size}')

        call_with_retry(copy_once, resource=self.resource)
