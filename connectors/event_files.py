"""TensorBoard event files on any fsspec filesystem: local paths, ``gs://``, ``s3://``, ...

The source is listed once, by the launcher; workers open the files it names. A ``EventFileSource`` is
picklable and makes its filesystem lazily, so each worker builds its own client from the same
storage options (credentials come from each library's own chain and are never logged).
"""
from __future__ import annotations

import os
import posixpath
from typing import Any, BinaryIO, Dict, List, Optional

import fsspec

from transforms.classify import is_event_file

__all__ = ['EventFileSource', 'SourceError', 'MISSING_EXTRAS']

# protocol -> (package, runferry extra that installs it)
MISSING_EXTRAS = {'gs': ('gcsfs', 'gcs'), 'gcs': ('gcsfs', 'gcs'), 's3': ('s3fs', 's3'), 's3a': ('s3fs', 's3')}


class SourceError(Exception):
    """A logdir that cannot be used; the message is one line naming it."""


def _protocol(url: str) -> str:
    return url.split('://', 1)[0] if '://' in url else 'file'


class EventFileSource:
    def __init__(self, logdir: str, storage_options: Optional[Dict[str, Any]] = None):
        if '://' not in logdir:
            logdir = os.path.abspath(os.path.expanduser(logdir))
        self.logdir = logdir.rstrip('/') or '/'
        self.storage_options = dict(storage_options or {})
        self._fs = None
        self._root = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_fs'] = None
        state['_root'] = None
        return state

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            if _protocol(self.logdir) in ('gs', 'gcs') and os.environ.get('STORAGE_EMULATOR_HOST'):
                # gcsfs (read at its import) would otherwise probe every bucket's type over gRPC, which no
                # emulator answers: a 60 s timeout per call
                os.environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
            try:
                self._fs, self._root = fsspec.core.url_to_fs(self.logdir, **self.storage_options)
            except ImportError as error:
                package, extra = MISSING_EXTRAS.get(_protocol(self.logdir), (None, None))
                if package:
                    raise SourceError(f'{self.logdir}: reading {_protocol(self.logdir)}:// needs {package}; '
                                      f"install it with: pip install 'runferry[{extra}]'") from error
                raise SourceError(f'{self.logdir}: {error}') from error
            except ValueError as error:
                raise SourceError(f'{self.logdir}: {error}') from error
            self._root = self._root.rstrip('/')
        return self._fs

    def url(self, relative: str) -> str:
        """The full path or URL of a path relative to the logdir."""
        return self.logdir if not relative else f'{self.logdir}/{relative}'

    def list_event_files(self) -> List[str]:
        """Relative paths of every event file below the logdir, sorted."""
        fs = self.fs
        try:
            if not fs.isdir(self._root):
                what = 'is not a directory' if fs.exists(self._root) else 'does not exist'
                raise SourceError(f'logdir {self.logdir} {what}')
            found = fs.find(self._root)
        except SourceError:
            raise
        except Exception as error:  # OSError, and each library's own (botocore's NoCredentialsError...)
            reason = str(error) if isinstance(error, OSError) else f'{type(error).__name__}: {error}'
            raise SourceError(f'logdir {self.logdir} cannot be listed: {reason}') from error
        prefix = self._root + '/'
        relative = []
        for path in found:
            path = path.rstrip('/')
            if path.startswith(prefix) and is_event_file(path):
                relative.append(path[len(prefix):])
        return sorted(relative)

    def open(self, relative: str) -> BinaryIO:
        return self.fs.open(posixpath.join(self._root_path(), relative), 'rb', block_size=1 << 20)

    def size(self, relative: str) -> int:
        return self.fs.size(posixpath.join(self._root_path(), relative))

    def _root_path(self) -> str:
        self.fs  # noqa: B018  (makes _root)
        return self._root
