"""An Aim repo's prefix on object storage (``gs://…``, ``s3://…``, any fsspec URL): the file operations
the bucket repo needs (``connectors.aim_bucket_runs``, ``connectors.aim_bucket_index``), each retried
through ``connectors.retry`` and named by its URL with credentials masked.

The layout under the prefix is exactly a local repo's: ``PREFIX/.aim/…`` (what ``aim init`` makes,
then ``meta/chunks/<hash>/``, ``seqs/chunks/<hash>/``, ``run_metadata.sqlite``, ``meta/index/``), so a
copy of the prefix on a disk is an Aim repo. runferry's own bookkeeping lives beside it, in
``PREFIX/.runferry/`` (``RUNFERRY_DIR``), which Aim never reads.
"""
from __future__ import annotations

import os
import posixpath
from typing import Any, Dict, Iterable, List, Optional, Tuple

from connectors.event_files import MISSING_EXTRAS
from connectors.redact import mask_uri
from connectors.retry import call_with_retry

__all__ = ['BucketRepo', 'BucketError', 'is_bucket_url', 'check_protocol', 'AIM_DIR', 'RUNFERRY_DIR']

AIM_DIR = '.aim'  # aim.sdk.configs.get_aim_repo_name()
RUNFERRY_DIR = '.runferry'


class BucketError(Exception):
    """A bucket repo URL that cannot be used; the message is one line naming it (credentials masked)."""


def is_bucket_url(repo: str) -> bool:
    """A ``--repo`` that names object storage: any ``scheme://`` URL but an Aim server's (``aim://``)."""
    return '://' in repo and not repo.startswith('aim://')


def _protocol(url: str) -> str:
    return url.split('://', 1)[0]


def check_protocol(url: str) -> None:
    """``BucketError`` unless fsspec knows the URL's protocol and its filesystem package is installed.
    Loads nothing but that package."""
    import fsspec

    protocol = _protocol(url)
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        package, extra = MISSING_EXTRAS.get(protocol, (None, None))
        install = (f"install it with: pip install 'runferry[{extra}]'" if extra
                   else "install fsspec's package for it")
        raise BucketError(f'--repo {mask_uri(url)}: writing {protocol}:// needs '
                          f'{package or "a filesystem package"}; {install}') from None
    except ValueError:
        raise BucketError(f'--repo {mask_uri(url)}: unknown storage protocol {protocol!r} '
                          f'(a local path, aim://HOST:PORT, or an fsspec URL such as gs:// or s3://)') from None


class BucketRepo:
    """The prefix ``url`` on its filesystem, opened lazily (picklable: a worker opens its own)."""

    def __init__(self, url: str, storage_options: Optional[Dict[str, Any]] = None):
        self.url = url.rstrip('/')
        self.storage_options = dict(storage_options or {})
        self._fs = None
        self._root = None

    def __getstate__(self):
        return {**self.__dict__, '_fs': None, '_root': None}

    @property
    def fs(self):
        if self._fs is None:
            import fsspec

            if _protocol(self.url) in ('gs', 'gcs') and os.environ.get('STORAGE_EMULATOR_HOST'):
                # gcsfs (read at its import) would probe every bucket over gRPC, which no emulator answers
                os.environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
            check_protocol(self.url)
            self._fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
            self._root = root.rstrip('/')
        return self._fs

    @property
    def masked(self) -> str:
        return mask_uri(self.url)

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` under the prefix (``path('.aim', 'VERSION')``)."""
        self.fs  # noqa: B018  (makes _root)
        return posixpath.join(self._root, *parts)

    def _retry(self, what: str, fn, *args, **kwargs):
        return call_with_retry(fn, *args, resource=f'{self.masked}: {what}', **kwargs)

    def exists(self, *parts: str) -> bool:
        return self._retry(f'exists {"/".join(parts)}', self.fs.exists, self.path(*parts))

    def glob(self, *parts: str) -> List[str]:
        """Names (not paths) of the files matching the pattern ``parts``, sorted; a fresh listing."""
        def listing():
            self.fs.invalidate_cache()
            return self.fs.glob(self.path(*parts))
        return sorted(posixpath.basename(p.rstrip('/')) for p in self._retry(f'list {"/".join(parts)}', listing))

    def list_files(self, *parts: str) -> Dict[str, int]:
        """{name: size} of the files directly in the directory ``parts`` ({} if there is none)."""
        def listing():
            self.fs.invalidate_cache()
            try:
                entries = self.fs.ls(self.path(*parts), detail=True)
            except FileNotFoundError:
                return []
            return entries
        return {posixpath.basename(e['name'].rstrip('/')): int(e.get('size') or 0)
                for e in self._retry(f'list {"/".join(parts)}', listing) if e.get('type') == 'file'}

    def put_file(self, local: str, *parts: str) -> None:
        self._retry(f'upload {"/".join(parts)}', self.fs.put_file, local, self.path(*parts))

    def put_files(self, pairs: Iterable[Tuple[str, Tuple[str, ...]]]) -> None:
        """Upload each (local file, remote parts), in one call (an async filesystem sends them together)."""
        pairs = list(pairs)
        if not pairs:
            return
        locals_ = [local for local, _ in pairs]
        remotes = [self.path(*parts) for _, parts in pairs]
        self._retry(f'upload {len(pairs)} file(s)', self.fs.put, locals_, remotes)

    def get_files(self, pairs: Iterable[Tuple[Tuple[str, ...], str]]) -> None:
        """Download each (remote parts, local file), in one call."""
        pairs = list(pairs)
        if not pairs:
            return
        remotes = [self.path(*parts) for parts, _ in pairs]
        locals_ = [local for _, local in pairs]
        for local in locals_:
            os.makedirs(os.path.dirname(local), exist_ok=True)
        self._retry(f'download {len(pairs)} file(s)', self.fs.get, remotes, locals_)

    def read_bytes(self, *parts: str) -> bytes:
        return self._retry(f'read {"/".join(parts)}', self.fs.cat_file, self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> None:
        self._retry(f'write {"/".join(parts)}', self.fs.pipe_file, self.path(*parts), data)

    def remove(self, paths: List[Tuple[str, ...]]) -> None:
        """Remove these files; one already gone is no error (a retry may find its delete done)."""
        if not paths:
            return

        def remove_all():
            for parts in paths:
                try:
                    self.fs.rm_file(self.path(*parts))
                except FileNotFoundError:
                    pass
        self._retry(f'remove {len(paths)} file(s)', remove_all)

    def remove_tree(self, *parts: str) -> None:
        """Remove every file under the directory ``parts`` (nothing if there is none)."""
        def remove():
            self.fs.invalidate_cache()
            try:
                self.fs.rm(self.path(*parts), recursive=True)
            except FileNotFoundError:
                pass
        self._retry(f'remove {"/".join(parts)}', remove)
