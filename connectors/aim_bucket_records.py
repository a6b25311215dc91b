"""A run's index records as one small file: what the bucket repo's final index step needs of a run.

Each run written into a bucket repo leaves ``PREFIX/.runferry/index-records/<hash>.<digest>``, uploaded
after the run's containers: it is the run's marker (a run without it is not taken as present) and holds
the run's SQLite props (``connectors.aim_index.RunProps``) and every record of its meta container, which
the index step copies into ``meta/index`` as Aim's ``finalize`` does. ``<digest>`` is a hash of the
run's whole content (props, and every record of both its containers): a re-run that computes the same
digest finds the run already there, equal, and uploads nothing.

The format is read without ``pickle`` (it comes from a bucket): a header line, the props as one JSON
line, then zlib-compressed frames ``>IIB`` (key length, value length, blob flag) + key + value.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zlib
from typing import Any, BinaryIO, Iterable, Iterator, Tuple

from aim.storage.utils import BLOB

from connectors.aim_index import RunProps

__all__ = ['write_records', 'read_records', 'read_props', 'record_name', 'hash_of_record', 'content_digest',
           'plain_records']

_HEADER = b'runferry-index-records 1\n'
_FRAME = struct.Struct('>IIB')
_DIGEST_CHARS = 32


def plain_records(items: Iterable[Tuple[bytes, Any]]) -> Iterator[Tuple[bytes, bytes, bool]]:
    """A container's (key, value) records as (key, value bytes, was a blob): lazy ``BLOB``s loaded."""
    for key, value in items:
        if isinstance(value, BLOB):
            yield bytes(key), bytes(value.load()), True
        else:
            yield bytes(key), bytes(value), False


def write_records(out: BinaryIO, props: RunProps, records: Iterable[Tuple[bytes, bytes, bool]]) -> None:
    """The file: header, props, compressed record frames."""
    out.write(_HEADER)
    out.write(json.dumps(dataclasses.asdict(props), sort_keys=True).encode() + b'\n')
    compressor = zlib.compressobj(1)
    for key, value, is_blob in records:
        out.write(compressor.compress(_FRAME.pack(len(key), len(value), is_blob) + key + value))
    out.write(compressor.flush())


def _open(source: BinaryIO) -> RunProps:
    if source.readline() != _HEADER:
        raise ValueError('not a runferry index-records file (or a newer format)')
    fields = json.loads(source.readline())
    fields['tags'] = tuple(fields.get('tags') or ())
    return RunProps(**fields)


def read_props(source: BinaryIO) -> RunProps:
    return _open(source)


def read_records(source: BinaryIO) -> Tuple[RunProps, Iterator[Tuple[bytes, Any]]]:
    """(props, the meta records as ``index_runs`` takes them: values that were blobs as ``BLOB``s)."""
    props = _open(source)
    data = zlib.decompress(source.read())

    def records():
        offset = 0
        while offset < len(data):
            key_size, value_size, is_blob = _FRAME.unpack_from(data, offset)
            offset += _FRAME.size
            key = data[offset:offset + key_size]
            offset += key_size
            value = data[offset:offset + value_size]
            offset += value_size
            yield key, (BLOB(data=value) if is_blob else value)
    return props, records()


def content_digest(props: RunProps, *containers: Iterable[Tuple[bytes, bytes, bool]]) -> str:
    """A hash of a run's content: its props and every record of its containers, in order."""
    digest = hashlib.blake2b(digest_size=_DIGEST_CHARS // 2)
    digest.update(json.dumps(dataclasses.asdict(props), sort_keys=True).encode())
    for records in containers:
        digest.update(b'\0container\0')
        for key, value, is_blob in records:
            digest.update(_FRAME.pack(len(key), len(value), is_blob))
            digest.update(key)
            digest.update(value)
    return digest.hexdigest()


def record_name(run_hash: str, digest: str) -> str:
    return f'{run_hash}.{digest}'


def hash_of_record(name: str) -> str:
    return name.split('.', 1)[0]
