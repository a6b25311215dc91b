"""Aim's storage format, written in bulk: RocksDB write-batch records assembled as bytes.

Aim keeps a run in two RocksDB databases (``meta`` and ``seqs``) whose keys are Aim's encoded tree paths
(``aim.storage.encoding``) and whose values are Aim's encoded leaves. Aim's own writers set one key at a
time (``ContainerTreeView.set`` commits a batch per assignment, ``RunTracker._track`` several per point).
This module builds the same records, many at once, in RocksDB's serialized ``WriteBatch`` layout (tag,
varint key length, key, varint value length, value), and commits them as one batch:

* ``metric_records``: a metric sequence's four arrays (val, step, epoch, time), keyed by Aim's step key
  (``hash_auto`` of the step), built with numpy, one byte matrix per array;
* ``assignment``: what ``ContainerTreeView.set(path, value)`` writes for any value (objects, dicts,
  lists), Aim objects unfolded from their storage in place (no deep copies);
* ``RecordBatch``: records gathered across sequences and committed in one batch, bounded by size.

It depends on Aim's private storage layout; tests/test_bulk_write.py checks every key and value it
leaves against Aim's per-point path and ``aim.Run``, for the Aim version pinned in setup.py.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, Iterator, List, Tuple

import aimrocks
import numpy as np

from aim.storage import encoding as _encoding
from aim.storage.hashing import hash_auto
from aim.storage.object import CustomObject
from aim.storage.rockscontainer import BLOB_DOMAIN, BLOB_SENTINEL, RocksContainer
from aim.storage.treeutils import encode_paths_vals, unfold_tree
from aim.storage.utils import BLOB, ArrayFlag, CustomObjectFlagType

__all__ = ['COMMIT_BYTES', 'METRIC_ARRAYS', 'OBJECT_ARRAYS', 'ARRAY_PATHS', 'RecordBatch', 'MetaWrites', 'metric_records',
           'array_flags', 'few_metric_records', 'FEW', 'assignment', 'delete_range', 'put_value', 'ARRAY_FLAG', 'step_keys', 'metric_value_key', 'decode_floats',
           'encode_path']

METRIC_ARRAYS = ('val', 'step', 'epoch', 'time')  # a version-2 (metric) sequence, keyed by step hash
OBJECT_ARRAYS = ('epoch', 'time', 'val')  # a version-1 (object) sequence, keyed by the step itself
ARRAY_PATHS = {name: _encoding.encode_path((name,)) for name in METRIC_ARRAYS}
_ARRAY_FLAG = _encoding.encode(ArrayFlag)
_PATH_SENTINEL = b'\xfe'
_NONE = _encoding.encode(None)
_FLOAT_TYPE = _encoding.encode(0.0)[0]
_INT_TYPE = _encoding.encode(0)[0]
_PUT, _DELETE_RANGE = b'\x01', b'\x0f'  # RocksDB's kTypeValue and kTypeRangeDeletion record tags
# gathered records are committed once they reach this size (a chunk of 100,000 metric points makes ~33 MB):
# a batch is copied twice on its way into RocksDB, and its memtable takes it whole
COMMIT_BYTES = 8 << 20
encode_path = _encoding.encode_path

# Aim's step key (hash_auto: a blake2b per step) is the slow part of encoding; steps repeat across the
# sequences of a run and across runs, so their encoded keys are cached (bounded).
_STEP_KEYS: Dict[int, bytes] = {}
_STEP_KEYS_MAX = 1 << 20


def step_keys(steps: np.ndarray) -> np.ndarray:
    """Aim's encoded key of each step (``hash_auto``, then the path sentinel): an (n, 10) byte array."""
    cache = _STEP_KEYS
    step_list = steps.tolist()
    missing = [s for s in step_list if s not in cache]
    if missing:
        if len(cache) + len(missing) > _STEP_KEYS_MAX:
            cache.clear()
        encode_key = _encoding.encode_key
        for s in missing:
            cache[s] = encode_key(hash_auto(s)) + _PATH_SENTINEL
    keys = b''.join([cache[s] for s in step_list])
    return np.frombuffer(keys, dtype=np.uint8).reshape(len(step_list), -1)


def metric_value_key(prefix: bytes, step: int) -> bytes:
    """The key of a metric sequence's value at ``step`` (the sequence at encoded path ``prefix``)."""
    return prefix + ARRAY_PATHS['val'] + step_keys(np.asarray([step], dtype=np.int64)).tobytes()


def _encoded(type_id: int, column: np.ndarray, dtype: str) -> np.ndarray:
    """Aim's ``encoding.encode`` of every element at once: one type byte, then 8 little-endian bytes,
    as an (n, 9) byte array."""
    packed = np.empty(len(column), dtype=[('type', 'u1'), ('value', dtype)])
    packed['type'] = type_id
    packed['value'] = column
    return packed.view(np.uint8).reshape(len(column), 9)


def decode_floats(values: List[bytes]) -> np.ndarray:
    """The floats of Aim-encoded float leaves (``_encoded``'s inverse)."""
    if not values:
        return np.empty(0, dtype=np.float64)
    raw = np.frombuffer(b''.join(values), dtype=np.uint8).reshape(len(values), 9)
    return raw[:, 1:].copy().view('<f8').ravel()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT = [bytes((n,)) for n in range(0x80)]  # the one-byte varints


def _record(tag: bytes, key: bytes, value: bytes) -> bytes:
    """One write-batch record: tag, varint key length, key, varint value length, value."""
    key_length, value_length = len(key), len(value)
    return b''.join((tag, _SHORT[key_length] if key_length < 0x80 else _varint(key_length), key,
                     _SHORT[value_length] if value_length < 0x80 else _varint(value_length), value))


def _put_records(key_prefix: bytes, keys: np.ndarray, values: np.ndarray) -> bytes:
    """Put records ``key_prefix + key -> value`` for every row, in RocksDB's WriteBatch layout, built as
    one byte matrix: every key and every value of an array have the same length."""
    head = np.frombuffer(_PUT + _varint(len(key_prefix) + keys.shape[1]) + key_prefix, dtype=np.uint8)
    middle = np.frombuffer(_varint(values.shape[1]), dtype=np.uint8)
    widths = (len(head), keys.shape[1], len(middle), values.shape[1])
    rows = np.empty((len(keys), sum(widths)), dtype=np.uint8)
    at = 0
    for width, part in zip(widths, (head, keys, middle, values)):
        rows[:, at:at + width] = part
        at += width
    return rows.tobytes()


class RecordBatch:
    """Write-batch records gathered for one RocksDB container and committed together, in order.
    ``add`` takes one record or a block of ``count`` records; ``size`` is what is held, in bytes."""

    __slots__ = ('container', '_parts', '_count', 'size')

    def __init__(self, container: RocksContainer):
        self.container = container
        self._parts: List[bytes] = []
        self._count = 0
        self.size = 0

    def add(self, part: bytes, count: int = 1) -> None:
        self._parts.append(part)
        self._count += count
        self.size += len(part)

    def __len__(self) -> int:
        return self._count

    def commit(self) -> None:
        """Commit what is held as one batch (header: sequence 0, record count) and empty it."""
        if not self._parts:
            return
        header = b'\x00' * 8 + self._count.to_bytes(4, 'little')
        self._parts.insert(0, header)
        data = b''.join(self._parts)
        self._parts.clear()
        self._count = self.size = 0
        self.container.commit(aimrocks.WriteBatch(data))


def delete_range(batch: RecordBatch, key: bytes) -> None:
    """Delete everything at and below the encoded path ``key``, with its blobs."""
    batch.add(_record(_DELETE_RANGE, key, key + b'\xff'))
    batch.add(_record(_DELETE_RANGE, BLOB_DOMAIN + key, BLOB_DOMAIN + key + b'\xff'))


def array_flags(batch: RecordBatch, prefix: bytes, arrays: Tuple[str, ...]) -> None:
    """Mark the named subtrees of the sequence at ``prefix`` as arrays (``TreeView.make_array``)."""
    for name in arrays:
        batch.add(_record(_PUT, prefix + encode_path((name,)), _ARRAY_FLAG))


def metric_records(batch: RecordBatch, prefix: bytes, steps: np.ndarray, values: np.ndarray,
                   wall_times: np.ndarray) -> None:
    """Put the key/value pairs ``TreeView.set`` would write for these points of the metric sequence at
    ``prefix`` (its four arrays keyed by step key), assembled with numpy. At a repeated step, the later
    point wins (a later record of a key overrides an earlier one in the same batch)."""
    if len(steps) <= FEW:
        few_metric_records(batch, prefix, steps.tolist(), values.tolist(), wall_times.tolist())
        return
    keys = step_keys(steps)
    # RocksDB's memtable takes a batch of keys in sorted order about three times faster than in the
    # (hash-scattered) step order; the sort is stable, so a repeated step keeps its points' order
    order = np.argsort(keys.view(f'S{keys.shape[1]}').ravel(), kind='stable')
    keys = keys[order]
    n = len(order)
    columns = (  # in key order: epoch < step < time < val
        ('epoch', np.zeros((n, len(_NONE)), dtype=np.uint8) + np.frombuffer(_NONE, dtype=np.uint8)),
        ('step', _encoded(_INT_TYPE, steps[order], '<i8')),
        ('time', _encoded(_FLOAT_TYPE, wall_times[order], '<f8')),
        ('val', _encoded(_FLOAT_TYPE, values[order], '<f8')),
    )
    for array_name, encoded in columns:
        batch.add(_put_records(prefix + ARRAY_PATHS[array_name], keys, encoded), count=n)


FEW = 8  # below this many points, numpy's per-call cost exceeds the per-point work (runs of many tags)
_FLOAT_HEAD, _INT_HEAD = bytes((_FLOAT_TYPE,)), bytes((_INT_TYPE,))


def few_metric_records(batch: RecordBatch, prefix: bytes, steps: List[int], values: List[float],
                        wall_times: List[float]) -> None:
    """``metric_records`` for a few points, one record at a time (the same records, in the same order)."""
    keys = step_keys(np.asarray(steps, dtype=np.int64))
    order = sorted(range(len(steps)), key=lambda i: keys[i].tobytes())
    paths = [prefix + ARRAY_PATHS[name] for name in ('epoch', 'step', 'time', 'val')]
    for path, encode in zip(paths, (lambda i: _NONE, lambda i: _INT_HEAD + struct.pack('<q', steps[i]),
                                    lambda i: _FLOAT_HEAD + struct.pack('<d', wall_times[i]),
                                    lambda i: _FLOAT_HEAD + struct.pack('<d', values[i]))):
        for i in order:
            batch.add(_record(_PUT, path + keys[i].tobytes(), encode(i)))


def assignment(batch: RecordBatch, key: bytes, value: Any, replace: bool = True) -> None:
    """The write-batch records of ``ContainerTreeView.set`` of ``value`` at the encoded path ``key``: a
    range delete of the path and of its blobs (unless ``replace`` is False: the caller knows nothing is
    there), then every record of the value unfolded, a blob as its sentinel and its bytes (as
    ``RocksContainer.set`` stores one)."""
    if replace:
        delete_range(batch, key)
    for sub, encoded in encode_paths_vals(_unfold_objects(value, ())):
        if isinstance(encoded, BLOB):
            batch.add(_record(_PUT, key + sub, BLOB_SENTINEL))
            batch.add(_record(_PUT, BLOB_DOMAIN + key + sub, bytes(encoded)))
        else:
            batch.add(_record(_PUT, key + sub, encoded))


def put_value(batch: RecordBatch, key: bytes, value: Any) -> None:
    """Put one stored value at ``key`` as ``RocksContainer`` holds it: encoded bytes, or a blob."""
    if isinstance(value, BLOB):
        batch.add(_record(_PUT, key, BLOB_SENTINEL))
        batch.add(_record(_PUT, BLOB_DOMAIN + key, bytes(value.load() if hasattr(value, 'load') else value)))
    else:
        batch.add(_record(_PUT, key, value))


ARRAY_FLAG = _ARRAY_FLAG


class MetaWrites:
    """A write-only view of a subtree of a run's meta container: ``tree[path] = value`` adds the records
    ``ContainerTreeView`` would commit (``assignment``) to the run's meta ``RecordBatch``, committed when
    the batch grows large and when the run closes. Through Aim's trees each assignment (about five per
    sequence) is its own commit. ``replace=False`` leaves out each assignment's range deletes, for a
    container this write created (nothing to delete; a write assigns each path once)."""

    __slots__ = ('_batch', '_prefix', '_replace')

    def __init__(self, batch: RecordBatch, prefix: bytes, replace: bool = True):
        self._batch = batch
        self._prefix = prefix
        self._replace = replace

    def __setitem__(self, path, value) -> None:
        if path is Ellipsis:
            path = ()
        elif not isinstance(path, (tuple, list)):
            path = (path,)
        assignment(self._batch, self._prefix + encode_path(path), value, replace=self._replace)
        if self._batch.size >= COMMIT_BYTES:
            self._batch.commit()


def _unfold_objects(obj: Any, path: Tuple) -> Iterator[Tuple[Tuple, Any]]:
    """``unfold_tree(obj)``'s (path, value) pairs, reading each Aim object's storage in place."""
    if isinstance(obj, CustomObject):
        yield path, CustomObjectFlagType(obj.AIM_NAME)  # as unfold_tree: the object's flag, then its fields
        for key, field in obj.storage.container.items():
            yield from _unfold_objects(field, path + (key,))
    elif isinstance(obj, list):
        yield path, ArrayFlag
        for index, item in enumerate(obj):
            yield from _unfold_objects(item, path + (index,))
    elif isinstance(obj, dict) and obj:
        for key, item in obj.items():
            yield from _unfold_objects(item, path + (key,))
    else:  # a leaf, or an empty dict
        yield from unfold_tree(obj, path=path)

