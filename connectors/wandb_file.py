"""W&B's ``.wandb`` run files, read from any binary stream, without the W&B service.

Every W&B run leaves ``run-<id>.wandb`` in its run directory: W&B's record log (the LevelDB log format,
as W&B's Go core writes it, checked against files written by ``wandb`` 0.31 offline):

* a 7-byte file header: ``:W&B``, the magic ``0xBEE1`` (uint16, little-endian) and the version 0;
* then 32 KiB blocks (the first one starting with the header). A block holds chunks, each a 7-byte
  header ``uint32 crc | uint16 length | uint8 type`` (little-endian) and ``length`` bytes of data.
  The CRC is zlib's CRC-32 (IEEE, not masked) of the type byte followed by the data;
* a record fits one chunk (``FULL``) or spans blocks as ``FIRST``, ``MIDDLE``..., ``LAST``; fewer
  than 7 bytes left in a block are zero padding, and so is an all-zero chunk header;
* each record is a serialized ``wandb.proto.wandb_internal_pb2.Record``.

Written for damaged files, like ``connectors.tfrecord``:

* a file cut short (a run killed mid-write: a chunk, or a record's chunks, missing at the end) ends
  with one ``truncated`` problem, every record before it kept;
* a chunk that fails its CRC (or is malformed) loses the rest of its block and the record it belonged
  to: one problem; reading resumes at the next block, silently passing the trailing chunks of that
  record, at the next record that starts there;
* a file that does not begin with W&B's header is one ``header`` problem and nothing else.

Only the proto module of the ``wandb`` package is used (``runferry[wandb]``): importing it loads
generated message classes, starts no W&B process and opens no connection.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import BinaryIO, Iterator, NamedTuple, Optional, Union

from google.protobuf.message import DecodeError

__all__ = ['Problem', 'RawRecord', 'iter_raw_records', 'iter_records', 'record_class', 'BLOCK_SIZE',
           'FILE_HEADER', 'chunk']

BLOCK_SIZE = 32 * 1024
_FILE_HEADER = struct.Struct('<4sHB')
_IDENT, _MAGIC, _VERSION = b':W&B', 0xBEE1, 0
FILE_HEADER = _FILE_HEADER.pack(_IDENT, _MAGIC, _VERSION)
_CHUNK_HEADER = struct.Struct('<IHB')
_HEADER_SIZE = _CHUNK_HEADER.size  # 7, the file header's size too
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_NAMES = {FULL: 'FULL', FIRST: 'FIRST', MIDDLE: 'MIDDLE', LAST: 'LAST'}


@dataclasses.dataclass(frozen=True)
class Problem:
    """Bytes that could not be used: where (offset of the chunk or header), why, and what kind of damage
    (``header`` | ``truncated`` | ``chunk_crc`` | ``chunk`` | ``undecodable``)."""
    offset: int
    reason: str
    kind: str


class RawRecord(NamedTuple):
    """A record's bytes, every chunk of which passed its CRC; ``offset`` is its first chunk's."""
    offset: int
    payload: bytes


# the CRC of each possible type byte, the start value of its chunks' CRC (computed once, not per chunk)
_TYPE_CRC = tuple(zlib.crc32(bytes((chunk_type,))) for chunk_type in range(256))


def _crc(chunk_type: int, data: bytes) -> int:
    return zlib.crc32(data, _TYPE_CRC[chunk_type])


def chunk(chunk_type: int, data: bytes) -> bytes:
    """One chunk as W&B's writer puts it on disk (for tests that build damaged files)."""
    return _CHUNK_HEADER.pack(_crc(chunk_type, data), len(data), chunk_type) + data


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the stream."""
    parts, have = [], 0
    while have < size:
        part = stream.read(size - have)
        if not part:
            break
        parts.append(part)
        have += len(part)
    return b''.join(parts)


def iter_raw_records(stream: BinaryIO) -> Iterator[Union[RawRecord, Problem]]:
    """Every intact record of a ``.wandb`` stream in order, and a ``Problem`` for each damaged stretch.
    Reads one block at a time: memory holds a block and the record being assembled."""
    header = _read_exact(stream, _FILE_HEADER.size)
    if not header:
        return
    if len(header) < _FILE_HEADER.size:
        yield Problem(0, f'truncated file header ({len(header)} of 7 bytes)', 'truncated')
        return
    ident, magic, version = _FILE_HEADER.unpack(header)
    if ident != _IDENT or magic != _MAGIC:
        yield Problem(0, f'not a .wandb file (header {header!r}, expected {FILE_HEADER!r})', 'header')
        return
    if version != _VERSION:
        yield Problem(0, f'.wandb format version {version} is not supported (only {_VERSION})', 'header')
        return
    block_start = 0
    block = header + _read_exact(stream, BLOCK_SIZE - _FILE_HEADER.size)
    i = _FILE_HEADER.size
    pending: Optional[list] = None  # the chunks of a record begun in a FIRST chunk
    pending_offset = 0
    skipping = False  # after damage: the rest of the damaged record's chunks are passed silently
    while True:
        end = len(block)
        while end - i >= _HEADER_SIZE:
            offset = block_start + i
            crc, length, chunk_type = _CHUNK_HEADER.unpack_from(block, i)
            if crc == 0 and length == 0 and chunk_type == 0:  # zero padding up to the block's end
                break
            if i + _HEADER_SIZE + length > end:
                if end < BLOCK_SIZE:  # the last block, cut short
                    yield Problem(pending_offset if pending is not None else offset,
                                  f'record cut short at end of file (chunk at offset {offset} needs '
                                  f'{length} bytes, {end - i - _HEADER_SIZE} left)', 'truncated')
                    return
                yield Problem(offset, f'chunk of {length} bytes runs past its block; rest of block skipped',
                              'chunk')
                pending, skipping = None, True
                break
            data = block[i + _HEADER_SIZE:i + _HEADER_SIZE + length]
            if zlib.crc32(data, _TYPE_CRC[chunk_type]) != crc:
                yield Problem(offset, 'chunk fails its CRC; rest of block skipped', 'chunk_crc')
                pending, skipping = None, True
                break
            i += _HEADER_SIZE + length
            if chunk_type == FULL or chunk_type == FIRST:
                if pending is not None:
                    yield Problem(pending_offset, f'record lost: its chunks end without a LAST chunk '
                                                  f'(a {_TYPE_NAMES[chunk_type]} chunk follows)', 'chunk')
                skipping = False
                if chunk_type == FULL:
                    pending = None
                    yield RawRecord(offset, data)
                else:
                    pending, pending_offset = [data], offset
            elif chunk_type == MIDDLE or chunk_type == LAST:
                if pending is None:
                    if not skipping:
                        yield Problem(offset, f'{_TYPE_NAMES[chunk_type]} chunk without the start of its record',
                                      'chunk')
                        skipping = True
                    continue
                pending.append(data)
                if chunk_type == LAST:
                    yield RawRecord(pending_offset, b''.join(pending))
                    pending = None
            else:
                yield Problem(offset, f'unknown chunk type {chunk_type}; rest of block skipped', 'chunk')
                pending, skipping = None, True
                break
        if end < BLOCK_SIZE:  # the last block
            tail = block[i:]
            if pending is not None:
                yield Problem(pending_offset, 'record cut short at end of file (its LAST chunk is missing)',
                              'truncated')
            elif tail.strip(b'\0'):
                yield Problem(block_start + i, f'chunk header cut short at end of file ({len(tail)} of 7 bytes)',
                              'truncated')
            return
        block_start += BLOCK_SIZE
        block = _read_exact(stream, BLOCK_SIZE)
        i = 0


def record_class():
    """``wandb.proto.wandb_internal_pb2.Record`` (imported on first use: the launcher need not load it)."""
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2.Record


def iter_records(stream: BinaryIO) -> Iterator[Union[tuple, Problem]]:
    """(offset, ``Record`` proto) for every intact record, and a ``Problem`` for each damaged stretch and
    each record whose bytes are not a ``Record``."""
    from_string = record_class().FromString
    for item in iter_raw_records(stream):
        if item.__class__ is Problem:
            yield item
            continue
        try:
            yield item.offset, from_string(item.payload)
        except DecodeError as error:
            yield Problem(item.offset, f'record is not a W&B Record proto: {error}', 'undecodable')
