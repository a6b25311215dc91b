"""TFRecord framing, as TensorBoard event files use it, read from any binary stream.

A record is ``uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)``,
little-endian (see ``apache_beam/io/tfrecordio.py``). The reader is written for damaged files:

* a clean end of stream ends the file;
* a record cut short at the end (a job killed mid-write) ends the file with a ``truncated`` problem,
  keeping every record before it, as TensorBoard's own loader does;
* a bad payload CRC skips that one record (its length was verified, so the next frame is known);
* a bad length CRC means the frame boundary is lost: the reader scans forward for the next offset
  whose 12 header bytes carry a valid length CRC and resumes there (``resync``).

Every record it yields passed both CRCs; every byte it could not use is reported as a ``Problem``.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO, Dict, Iterator, List, NamedTuple, Union

import crc32c as _crc32c

__all__ = ['Record', 'RecordBatch', 'Problem', 'iter_records', 'iter_record_batches', 'masked_crc', 'frame']

_HEADER = struct.Struct('<QI')
_FOOTER = struct.Struct('<I')
_MASK_DELTA = 0xA282EAD8
_CHUNK = 1 << 20
# A length this large is certainly a corrupted header, whatever its CRC says.
_MAX_RECORD = 1 << 31
_LENGTH_CRCS_MAX = 4096
_BATCH_BYTES = 16 << 20  # a batch of records also ends at this size (large images)


def masked_crc(data: bytes) -> int:
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(payload: bytes) -> bytes:
    """One framed record: what a TFRecord writer puts on disk for ``payload``."""
    header = struct.pack('<Q', len(payload))
    return header + _FOOTER.pack(masked_crc(header)) + payload + _FOOTER.pack(masked_crc(payload))


class Record(NamedTuple):
    """A record that passed both CRCs (a tuple: made once per record, so it must be cheap)."""
    offset: int
    payload: bytes


class RecordBatch(NamedTuple):
    """Consecutive records that passed both CRCs, as two columns."""
    offsets: List[int]
    payloads: List[bytes]


@dataclasses.dataclass(frozen=True)
class Problem:
    offset: int
    reason: str
    # 'truncated' | 'payload_crc' | 'length_crc'
    kind: str


class _Buffer:
    """A forward-only window over a stream, refilled in large chunks (no copy per record)."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._buf = b''
        self._i = 0      # read position inside _buf
        self._base = 0   # stream offset of _buf[0]
        self._eof = False

    @property
    def pos(self) -> int:
        return self._base + self._i

    def peek(self, n: int) -> bytes:
        if len(self._buf) - self._i < n and not self._eof:
            parts = [self._buf[self._i:]]
            have = len(parts[0])
            while have < n and not self._eof:
                chunk = self._stream.read(max(_CHUNK, n - have))
                if not chunk:
                    self._eof = True
                else:
                    parts.append(chunk)
                    have += len(chunk)
            self._base += self._i
            self._buf = b''.join(parts)
            self._i = 0
        return self._buf[self._i:self._i + n]

    def skip(self, n: int) -> None:
        available = len(self._buf) - self._i
        if n > available:
            self.peek(n)
            available = len(self._buf) - self._i
        self._i += min(n, available)

    def find_header(self) -> bool:
        """Advance to the next offset holding a header with a valid length CRC; False at end of stream."""
        self.skip(1)
        while True:
            window = self.peek(_CHUNK)
            if len(window) < _HEADER.size:
                self.skip(len(window))
                return False
            for i in range(0, len(window) - _HEADER.size + 1):
                if masked_crc(window[i:i + 8]) == _FOOTER.unpack_from(window, i + 8)[0]:
                    self.skip(i)
                    return True
            # keep the last bytes: a header may straddle the window's end
            self.skip(len(window) - _HEADER.size + 1)


def iter_records(stream: BinaryIO) -> Iterator[Union[Record, Problem]]:
    """Every record of the stream in order, and a ``Problem`` for every damaged stretch."""
    for item in iter_record_batches(stream):
        if item.__class__ is Problem:
            yield item
        else:
            yield from map(Record, item.offsets, item.payloads)


def iter_record_batches(stream: BinaryIO, max_records: int = 4096) -> Iterator[Union[RecordBatch, Problem]]:
    """The records of the stream in order, in batches of at most ``max_records``, and a ``Problem`` for
    every damaged stretch (between the batches, where it occurred).

    The loop for intact records is written flat (local names, ``unpack_from`` on one buffer refilled
    in 1 MiB reads, the CRC mask inline, a length's CRC computed once per distinct length, two list
    appends): it runs once per scalar point on typical event files. Anything unusual goes through
    ``_Buffer``'s slower, general path."""
    buf = _Buffer(stream)
    unpack_header = _HEADER.unpack_from
    unpack_footer = _FOOTER.unpack_from
    crc = _crc32c.crc32c
    delta = _MASK_DELTA
    # a length's CRC is a function of the length alone, and a log's records have few distinct lengths
    length_crcs: Dict[int, int] = {}
    known_length_crc = length_crcs.get
    offsets: List[int] = []
    payloads: List[bytes] = []
    try:
        while True:
            data, i, base = buf._buf, buf._i, buf._base
            end = len(data)
            room = max_records - len(payloads)
            # fast path: whole records inside the buffer
            while end - i >= 12 and room:
                length, length_crc = unpack_header(data, i)
                if known_length_crc(length) != length_crc:
                    c = crc(data[i:i + 8])
                    if ((((c >> 15) | (c << 17)) + delta) & 0xFFFFFFFF) != length_crc or length > _MAX_RECORD:
                        break
                    if len(length_crcs) >= _LENGTH_CRCS_MAX:
                        length_crcs.clear()
                    length_crcs[length] = length_crc
                stop = i + 12 + length
                if stop + 4 > end:
                    break
                payload = data[i + 12:stop]
                c = crc(payload)
                if ((((c >> 15) | (c << 17)) + delta) & 0xFFFFFFFF) != unpack_footer(data, stop)[0]:
                    break
                offsets.append(base + i)
                payloads.append(payload)
                room -= 1
                i = stop + 4
            buf._i = i
            if not room:
                yield RecordBatch(offsets, payloads)
                offsets, payloads = [], []
                continue
            # slow path: refill, end of stream, or a damaged record (reached at least once a buffer, so
            # a batch of large records is bounded in bytes here too)
            if payloads and sum(map(len, payloads)) >= _BATCH_BYTES:
                yield RecordBatch(offsets, payloads)
                offsets, payloads = [], []
            offset = buf.pos
            header = buf.peek(_HEADER.size)
            if not header:
                break
            problem = None
            if len(header) < _HEADER.size:
                problem = Problem(offset, f'truncated record header ({len(header)} of 12 bytes) at end of file',
                                  'truncated')
            else:
                length, length_crc = _HEADER.unpack(header)
                if masked_crc(header[:8]) != length_crc or length > _MAX_RECORD:
                    problem = Problem(offset, 'record length fails its CRC; scanning for the next record', 'length_crc')
                else:
                    body = buf.peek(_HEADER.size + length + _FOOTER.size)
                    if len(body) < _HEADER.size + length + _FOOTER.size:
                        problem = Problem(offset, f'truncated record ({len(body)} of {_HEADER.size + length + 4} '
                                                  'bytes) at end of file', 'truncated')
                    else:
                        buf.skip(len(body))
                        payload = body[_HEADER.size:_HEADER.size + length]
                        if masked_crc(payload) != _FOOTER.unpack_from(body, _HEADER.size + length)[0]:
                            problem = Problem(offset, 'record payload fails its CRC', 'payload_crc')
                        else:
                            offsets.append(offset)
                            payloads.append(payload)
                            continue
            if payloads:
                yield RecordBatch(offsets, payloads)
                offsets, payloads = [], []
            yield problem
            if problem.kind == 'truncated':
                return
            if problem.kind == 'length_crc' and not buf.find_header():
                return
    except Exception:
        if payloads:  # the stream failed: what it gave before that is still delivered, then the error
            yield RecordBatch(offsets, payloads)
        raise
    if payloads:
        yield RecordBatch(offsets, payloads)
