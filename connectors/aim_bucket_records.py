"""A run's index records as one small file: what the bucket repo's final index step needs of a run.

Each run written into a bucket repo leaves ``PREFIX/.runferry/index-records/<hash>.<digest>``, uploaded
after the run's containers: it is the run's marker (a run without it is not taken as present) and holds
the run's SQLite props (``connectors.aim_index.RunProps``) and every record of its meta container, which
the index step copies into ``meta/index`` as Aim's ``finalize`` does. ``<digest>`` is a hash of the
run's whole content (props, and every record of both its containers): a re-run that computes the same
digest finds the run already there, equal, and uploads nothing.

The format is read without ``pickle`` (it comes from a bucket): a header line, the props as one JSON
line, then the records as ``connectors.aim_record_frames`` packs them (the bytes a writer packed at the
run's close are written as they are: ``write_packed``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, BinaryIO, Iterable, Iterator, Tuple

from connectors.aim_index import RunProps
from connectors.aim_record_frames import FRAME as _FRAME, pack_frames, plain_records, unpack_records

__all__ = ['write_records', 'write_packed', 'read_records', 'read_props', 'record_name', 'hash_of_record', 'content_digest',
           'plain_records']

_HEADER = b'runferry-index-records 1\n'
_DIGEST_CHARS = 32


def write_records(out: BinaryIO, props: RunProps, records: Iterable[Tuple[bytes, bytes, bool]]) -> None:
    """The file: header, props, compressed record frames."""
    write_packed(out, props, pack_frames(records))


def write_packed(out: BinaryIO, props: RunProps, packed: bytes) -> None:
    """The file, of records already packed (``connectors.aim_local_run.pack_records``)."""
    out.write(_HEADER)
    out.write(json.dumps(dataclasses.asdict(props), sort_keys=True).encode() + b'\n')
    out.write(packed)


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
    return props, unpack_records(source.read())


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
