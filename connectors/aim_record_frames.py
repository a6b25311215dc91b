"""A run's meta records as one compressed bytes object, in the one format runferry keeps them in.

Each record is a frame ``>IIB`` (key length, value length, was a blob) + key + value; the frames are
zlib-compressed as one stream (level 1). The same bytes are what a writer hands to the index step
(``connectors.aim_local_run.pack_records``), the body of a local repo's kept-records file
(``connectors.aim_kept_records``) and of a bucket repo's index-records file
(``connectors.aim_bucket_records``): a run's records are encoded once, at close, and written to a file
as they are. The format is read without ``pickle`` (a bucket's file may come from anywhere).
"""
from __future__ import annotations

import struct
import zlib
from typing import Any, Iterable, Iterator, Optional, Tuple

from aim.storage.utils import BLOB

__all__ = ['FRAME', 'plain_records', 'pack_frames', 'iter_frames', 'unpack_records']

FRAME = struct.Struct('>IIB')
_LEVEL = 1  # the records are small and many: speed over size


def plain_records(items: Iterable[Tuple[bytes, Any]]) -> Iterator[Tuple[bytes, bytes, bool]]:
    """A container's (key, value) records as (key, value bytes, was a blob): lazy ``BLOB``s loaded."""
    for key, value in items:
        if isinstance(value, BLOB):
            yield bytes(key), bytes(value.load()), True
        else:
            yield bytes(key), bytes(value), False


def pack_frames(records: Iterable[Tuple[bytes, bytes, bool]], max_bytes: Optional[int] = None) -> Optional[bytes]:
    """(key, value, was a blob) records → the compressed frames; None once keys and values pass
    ``max_bytes`` (the caller then reads the records from their container instead)."""
    parts, size, pack = [], 0, FRAME.pack
    for key, value, is_blob in records:
        size += len(key) + len(value)
        if max_bytes is not None and size > max_bytes:
            return None
        parts.append(pack(len(key), len(value), is_blob))
        parts.append(key)
        parts.append(value)
    return zlib.compress(b''.join(parts), _LEVEL)


def iter_frames(data: bytes) -> Iterator[Tuple[bytes, bytes, bool]]:
    """The decompressed frames ``data`` → (key, value, was a blob) records, in order."""
    offset, end, unpack, header = 0, len(data), FRAME.unpack_from, FRAME.size
    while offset < end:
        key_size, value_size, is_blob = unpack(data, offset)
        offset += header
        key = data[offset:offset + key_size]
        offset += key_size
        yield key, data[offset:offset + value_size], bool(is_blob)
        offset += value_size


def unpack_records(packed: bytes) -> Iterator[Tuple[bytes, Any]]:
    """``pack_frames``' bytes → the records as a container gives them and ``index_runs`` takes them:
    values that were blobs as ``BLOB``s."""
    for key, value, is_blob in iter_frames(zlib.decompress(packed)):
        yield key, (BLOB(data=value) if is_blob else value)
