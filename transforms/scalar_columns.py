"""Scalar events decoded column-wise with numpy, without a protobuf parse per record.

Most records of a training log are one scalar each, serialized identically but for their numbers: an
``Event`` holding ``wall_time``, an optional ``step`` and a ``Summary`` with exactly one ``Value``
that is either tensorboardX's ``simple_value``::

    09 <wall_time: 8> [10 <step: varint>] 2a <n1> 0a <n2> 0a <tag length> <tag> 15 <float32: 4>

or TF2's float32 scalar tensor (its ``scalars`` plugin metadata comes with the tag's first event only,
which is not of this shape)::

    ... 0a <tag length> <tag> 42 0a 08 01 12 00 2a 04 <float32: 4>

``match_scalars`` checks every byte of that layout for all records of a batch at once (the lengths
included, so a record with any other field, a second value, or metadata does not match) and decodes
the matches' columns. Whatever does not match exactly goes through the protobuf path, so the result is
the protobuf path's, record for record (tests/test_scalar_columns.py compares them).
"""
from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

__all__ = ['ScalarColumns', 'match_scalars', 'SIMPLE_VALUE', 'SCALAR_TENSOR']

SIMPLE_VALUE, SCALAR_TENSOR = 0, 1
# after the tag: simple_value (field 2, fixed32) / tensor (field 8) {dtype FLOAT, shape {}, float_val [x]}
_SIMPLE_TAG = 0x15
_TENSOR_TAIL = np.frombuffer(b'\x42\x0a\x08\x01\x12\x00\x2a\x04', dtype=np.uint8)
_MAX_VARINT = 10


@dataclasses.dataclass
class ScalarColumns:
    """The matched records of a batch (indices into it, ascending) and their decoded columns."""
    index: np.ndarray       # int64: which records matched
    form: np.ndarray        # uint8: SIMPLE_VALUE or SCALAR_TENSOR
    tag_id: np.ndarray      # int64: index into ``tags``
    tags: List[str]
    steps: np.ndarray       # int64
    wall_times: np.ndarray  # float64
    values: np.ndarray      # float64 (the float32 written, widened exactly)

    def select(self, mask: np.ndarray) -> 'ScalarColumns':
        return ScalarColumns(self.index[mask], self.form[mask], self.tag_id[mask], self.tags, self.steps[mask],
                             self.wall_times[mask], self.values[mask])


def _gather(buf: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes from each position of ``at``, as rows (positions must be in bounds)."""
    return buf[at[:, None] + np.arange(width)]


def match_scalars(data: bytes, starts: np.ndarray, lengths: np.ndarray) -> ScalarColumns:
    """The records (payload ``data[starts[i]:starts[i] + lengths[i]]``) of one of the two scalar
    layouts above, and their columns."""
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = starts + lengths
    # the shortest possible match: 09 +8, 2a n1 0a n2 0a tl, 1-byte tag, 15 +4
    ok = (lengths >= 9 + 6 + 1 + 5) & (buf[np.minimum(starts, len(buf) - 1)] == 0x09)
    idx = np.flatnonzero(ok)
    s = starts[idx]
    # optional step: 10 <varint>; pad so that reading ahead never leaves the buffer
    padded = np.concatenate([buf, np.zeros(_MAX_VARINT + 16, dtype=np.uint8)])
    has_step = padded[s + 9] == 0x10
    varint = _gather(padded, s + 10, _MAX_VARINT)
    terminal = varint < 0x80
    vlen = np.where(terminal.any(axis=1), terminal.argmax(axis=1) + 1, 0)
    ok = ~has_step | (vlen > 0)
    step_len = np.where(has_step, 1 + vlen, 0)
    p = s + 9 + step_len  # the summary's tag (2a)
    e = ends[idx]
    head = _gather(padded, p, 6)  # 2a n1 0a n2 0a tl
    tl = head[:, 5].astype(np.int64)
    n1, n2 = head[:, 1].astype(np.int64), head[:, 3].astype(np.int64)
    ok &= (head[:, 0] == 0x2a) & (head[:, 2] == 0x0a) & (head[:, 4] == 0x0a)
    ok &= (n1 < 0x80) & (n2 < 0x80) & (tl < 0x80) & (tl > 0)
    ok &= (p + 2 + n1 == e) & (n1 == n2 + 2)
    q = p + 6 + tl  # after the tag
    simple = ok & (n2 == 2 + tl + 5) & (padded[np.minimum(q, len(padded) - 1)] == _SIMPLE_TAG)
    tensor_tail = _gather(padded, np.minimum(q, len(buf)), len(_TENSOR_TAIL))
    tensor = ok & (n2 == 2 + tl + len(_TENSOR_TAIL) + 4) & (tensor_tail == _TENSOR_TAIL).all(axis=1)
    keep = simple | tensor
    idx, s, p, q, tl, simple = idx[keep], s[keep], p[keep], q[keep], tl[keep], simple[keep]
    has_step, varint, vlen = has_step[keep], varint[keep], vlen[keep]

    # tags: grouped by length, then by their bytes
    tag_id = np.empty(len(idx), dtype=np.int64)
    valid = np.ones(len(idx), dtype=bool)
    tags: List[str] = []
    for length in np.unique(tl):
        rows = np.flatnonzero(tl == length)
        raw = _gather(padded, p[rows] + 6, int(length))
        # each row as one fixed-width string (rows of one length differ as strings iff they differ)
        _, first, inverse = np.unique(raw.view(f'S{int(length)}').ravel(), return_index=True,
                                      return_inverse=True)
        ids = np.empty(len(first), dtype=np.int64)
        for u, row in enumerate(first):
            try:
                tags.append(raw[row].tobytes().decode('utf-8'))
                ids[u] = len(tags) - 1
            except UnicodeDecodeError:  # protobuf refuses such a string: left to its path
                ids[u] = -1
        tag_id[rows] = ids[inverse.ravel()]
    valid &= tag_id >= 0

    # step: little-endian base-128, up to 10 bytes, as protobuf reads an int64
    weights = np.left_shift(np.uint64(1), (7 * np.arange(_MAX_VARINT)).astype(np.uint64))
    digits = (varint & 0x7f).astype(np.uint64) * (np.arange(_MAX_VARINT) < vlen[:, None])
    steps = np.where(has_step, (digits * weights).sum(axis=1, dtype=np.uint64), np.uint64(0)).view(np.int64)
    wall_times = _gather(padded, s + 1, 8).copy().view('<f8').ravel()
    value_at = np.where(simple, q + 1, q + len(_TENSOR_TAIL))
    values = _gather(padded, value_at, 4).copy().view('<f4').ravel().astype(np.float64)
    return ScalarColumns(index=idx[valid], form=np.where(simple, SIMPLE_VALUE, SCALAR_TENSOR)[valid].astype(np.uint8),
                         tag_id=tag_id[valid], tags=tags, steps=steps[valid], wall_times=wall_times[valid],
                         values=values[valid])
