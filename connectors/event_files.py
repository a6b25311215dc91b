"""TensorBoard event files on any fsspec filesystem: local paths, ``gs://``, ``s3://``, ...

The source is listed once, by the launcher; workers open the files it names. A ``EventFileSource`` is
picklable and makes its filesystem lazily, so each worker builds its own client from the same
storage options (credentials come from each library's own chain and are never logged).

Every call to storage goes through ``connectors.retry``: the listing is retried as a whole, and an
opened file is a ``RetryingFile`` whose every ``read()`` survives transient errors by reopening the
file at the offset it had reached (fsspec reads in ranged 1 MiB blocks, so a retry asks again for the
block that failed, never for the start of the file). What still fails is an ``OSError`` naming the
file, which the reading DoFn turns into a dead letter.

On a local disk ``open`` refuses what is not a regular file before opening it: a named pipe would
block the worker forever, and a dangling symbolic link would look like a file deleted after listing.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from typing import Any, BinaryIO, Callable, Dict, List, Optional

import fsspec

from connectors.retry import RetriesExhausted, call_with_retry, is_transient, one_line

__all__ = ['EventFileSource', 'SourceError', 'RetryingFile', 'MISSING_EXTRAS', 'is_event_file']


def is_event_file(name: str) -> bool:
    """TensorBoard event files: ``events.out.tfevents.<time>.<host>...`` (any name holding 'tfevents')."""
    return 'tfevents' in posixpath.basename(name)

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
        return [path for path in self.list_files() if is_event_file(path)]

    def list_files(self) -> List[str]:
        """Relative paths of every file below the logdir (event files and others), sorted."""
        fs = self.fs

        def list_once() -> List[str]:
            if not fs.isdir(self._root):
                what = 'is not a directory' if fs.exists(self._root) else 'does not exist'
                raise SourceError(f'logdir {self.logdir} {what}')
            return fs.find(self._root)

        try:
            found = call_with_retry(list_once, resource=f'logdir {self.logdir}')
        except (SourceError, RetriesExhausted) as error:
            raise SourceError(str(error)) from error
        except Exception as error:  # OSError, and each library's own (botocore's NoCredentialsError...)
            reason = str(error) if isinstance(error, OSError) else f'{type(error).__name__}: {error}'
            raise SourceError(f'logdir {self.logdir} cannot be listed: {reason}') from error
        prefix = self._root + '/'
        relative = []
        for path in found:
            path = path.rstrip('/')
            if path.startswith(prefix):
                relative.append(path[len(prefix):])
        return sorted(relative)

    def open(self, relative: str) -> 'RetryingFile':
        """The file, opened for reading; storage errors are ``OSError``s (``FileNotFoundError`` when it
        is gone, ``RetriesExhausted`` when storage stayed unreachable)."""
        path = posixpath.join(self._root_path(), relative)
        fs = self.fs
        local = 'file' in _protocols(fs)

        def opener() -> BinaryIO:
            if local:
                _check_regular_file(path)
            return fs.open(path, 'rb', block_size=1 << 20)

        return RetryingFile(opener, self.url(relative))

    def size(self, relative: str) -> int:
        path = posixpath.join(self._root_path(), relative)
        with _as_os_error():
            return call_with_retry(self.fs.size, path, resource=self.url(relative))

    def _root_path(self) -> str:
        self.fs  # noqa: B018  (makes _root)
        return self._root


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _check_regular_file(path: str) -> None:
    """Raise a one-line ``OSError`` for what cannot be read as a file (checked before ``open``, which
    would block on a named pipe)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise OSError(f'broken symbolic link (its target {os.readlink(path)} does not exist)') from None
        raise
    if not stat.S_ISREG(mode):
        kind = ('named pipe' if stat.S_ISFIFO(mode) else 'socket' if stat.S_ISSOCK(mode)
                else 'directory' if stat.S_ISDIR(mode) else 'device' if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else 'special file')
        raise OSError(f'not a regular file (a {kind})')


@contextlib.contextmanager
def _as_os_error():
    """Storage libraries raise their own types for some failures (botocore's ``NoCredentialsError``...);
    callers of this module see ``OSError`` only."""
    try:
        yield
    except OSError:
        raise
    except Exception as error:
        raise OSError(one_line(error)) from error


class RetryingFile:
    """A read-only file whose reads survive transient storage errors.

    Opening and each ``read()`` go through ``call_with_retry``; a read that failed is tried again on a
    fresh handle seeked to the offset reached so far (the old handle may hold a broken connection or a
    half-filled buffer). Other attributes (``cache``, ``size``...) are the current handle's."""

    def __init__(self, opener: Callable[[], BinaryIO], resource: str):
        self._opener = opener
        self.resource = resource
        self._pos = 0
        self._broken = False
        with _as_os_error():
            self._file = call_with_retry(opener, resource=resource)

    def _read_once(self, size: int) -> bytes:
        if self._broken:
            with contextlib.suppress(Exception):
                self._file.close()
            handle = self._opener()
            handle.seek(self._pos)
            self._file, self._broken = handle, False
        try:
            return self._file.read(size)
        except Exception as error:
            self._broken = is_transient(error)
            raise

    def read(self, size: int = -1) -> bytes:
        with _as_os_error():
            data = call_with_retry(self._read_once, size, resource=self.resource)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = self._file.seek(offset, whence)
        return self._pos

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> 'RetryingFile':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str):
        if name.startswith('_'):  # not set yet: never look it up on the handle (or recurse)
            raise AttributeError(name)
        return getattr(self._file, name)
