"""Writing runs into an Aim repo (a local path or ``aim://host:port``), in bulk and idempotently.

Why not ``run.track``: it writes each point as several tree writes plus the sequence metadata
(last, min, max...) every time, about 3,000 points/s here. This sink writes one sequence's value,
step, epoch and time arrays in one batch (``TreeView.set``, which local containers and the remote
``ProxyTree`` both provide) and its metadata once.

Idempotence without a local cache: a run's Aim hash is derived from its source identity, so a re-run
opens the same Aim run; each sequence is rewritten whole from the source (points are keyed by step),
so nothing is ever duplicated and newly logged points are added.

Why not ``aim.Run`` on a local repo: most of a small run's cost there is fixed (its SQLite props
committed five times, a heartbeat thread, the tracker preloading sequence infos). ``_LocalRun`` opens
only what a run is made of — the run lock and its two RocksDB containers — and the SQLite props
(name, experiment, times, tags) are returned as ``RunProps`` and written for all runs at once, in one
transaction, by ``index_runs`` (one process: SQLite is a single-writer store). Remote repos go through
``aim.Run``, whose props the server writes.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import threading
import time
import zlib
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import aimrocks
import numpy as np
import pytz

import aim.sdk.base_run as _aim_base_run
from aim.sdk.repo import Repo
from aim.sdk.run import BasicRun
from aim.sdk.sequences.sequence_type_map import SEQUENCE_TYPE_MAP
from aim.sdk.utils import get_object_typename
from aim.storage import encoding as _encoding
from aim.storage.context import Context
from aim.storage.hashing import hash_auto
from aim.storage.object import CustomObject
from aim.storage.prefixview import PrefixView
from aim.storage.rockscontainer import BLOB_DOMAIN, BLOB_SENTINEL, RocksContainer
from aim.storage.treeutils import encode_paths_vals, unfold_tree
from aim.storage.utils import BLOB, ArrayFlag, CustomObjectFlagType

from transforms.series import METRIC, RunData, Series

__all__ = ['run_hash_for', 'open_repo', 'is_remote', 'AimRunWriter', 'WrittenRun', 'RunProps', 'index_runs',
           'IndexBusy', 'OBJECT_CONVERTERS']

logger = logging.getLogger(__name__)

# kind -> function(payload) -> Aim object (aim.Image, aim.Distribution, ...); filled by transforms.plugins
OBJECT_CONVERTERS: Dict[str, Any] = {}


def run_hash_for(identity: str) -> str:
    """The Aim run hash of a source run: 24 hex digits, like Aim's own, stable across re-runs."""
    return hashlib.sha256(identity.encode('utf-8')).hexdigest()[:24]


def is_remote(repo: str) -> bool:
    return repo.startswith('aim://')


def open_repo(repo: str, create: bool = True) -> Repo:
    if is_remote(repo):
        return Repo.from_path(repo)
    return Repo.from_path(os.path.abspath(repo), init=create)


# Aim has no public way to create a run with a chosen hash; BaseRun calls this module-level function
# when it needs a new one. The wrapper hands out a hash set for the calling thread, once.
_chosen_hash = threading.local()
_original_generate_run_hash = _aim_base_run.generate_run_hash


def _generate_run_hash(hash_length: int = 24) -> str:
    chosen = getattr(_chosen_hash, 'value', None)
    if chosen is not None:
        _chosen_hash.value = None
        return chosen
    return _original_generate_run_hash(hash_length)


_aim_base_run.generate_run_hash = _generate_run_hash


def _utc(timestamp: Optional[float]) -> Optional[datetime.datetime]:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=pytz.utc).replace(tzinfo=None)


@dataclasses.dataclass(frozen=True)
class RunProps:
    """A run's row in Aim's SQLite store, written later, with every other run's, by ``index_runs``."""
    hash: str
    name: str
    experiment: str
    description: Optional[str] = None
    tags: Tuple[str, ...] = ()
    created_at: Optional[float] = None
    finalized_at: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class WrittenRun:
    hash: str
    points: Dict[str, int]  # by kind
    props: Optional[RunProps]  # None when already written (remote repos: by the server)
    # every record of the run's meta container as written, for the repo index (local repos only), packed
    # by ``_pack_records``: one small bytes object a run (as Python objects, the records of a few hundred
    # runs held for the index step fragmented the heap by ~0.4 MB a run)
    meta_records: Optional[bytes] = None


class AimRunWriter:
    """Writes whole runs into one repo. One instance per worker; runs are written one at a time.

    ``prepare(data)`` begins opening a run's containers in a background thread, for a ``write`` of it
    that comes later (``transforms.runs.WriteRunsFn`` prepares each run one write ahead). Creating a
    RocksDB database is mostly waiting for the disk (a dozen fsyncs per database, two databases a run):
    measured with two workers on two cores, a run's write took 116-123 ms opened in line and 87-94 ms
    opened ahead, for the same CPU time. The open releases the GIL, so it overlaps the previous run's
    write and the next run's decoding."""

    def __init__(self, repo: str):
        self.repo_uri = repo
        self.repo = open_repo(repo, create=False)  # created by the launcher; init here would race
        self._opening: Dict[str, concurrent.futures.Future] = {}
        self._opener: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def prepare(self, data: RunData) -> None:
        """Begin opening the run's containers (local repos; a no-op for remote ones)."""
        if self.repo.is_remote_repo:
            return
        run_hash = run_hash_for(data.spec.identity)
        if run_hash not in self._opening:
            if self._opener is None:
                self._opener = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='runferry-open')
            self._opening[run_hash] = self._opener.submit(_LocalRun, self.repo, run_hash)

    def discard_prepared(self) -> None:
        """Close the runs prepared and never written; what their opening created is removed."""
        opening, self._opening = self._opening, {}
        for future in opening.values():
            try:
                run = future.result()
            except Exception:  # it failed to open: nothing is held
                continue
            run.discard()
        if self._opener is not None:
            self._opener.shutdown()
            self._opener = None

    def write(self, data: RunData) -> WrittenRun:
        """Write (or rewrite) one run's tree. On a local repo its SQLite props are returned, not written."""
        spec = data.spec
        run_hash = run_hash_for(spec.identity)
        if self.repo.is_remote_repo:
            return WrittenRun(run_hash, self._write_with_aim_run(run_hash, data), None)
        opening = self._opening.pop(run_hash, None)
        # an open that failed raises here, and the write's retry opens the run in line
        run = opening.result() if opening is not None else _LocalRun(self.repo, run_hash)
        try:
            for key, value in spec.attributes.items():
                run[key] = value
            written = _write_series(run, data.series)
        finally:
            run.close(end_time=spec.end_time)
        props = RunProps(run_hash, spec.name, spec.experiment, spec.description, tuple(spec.tags),
                         spec.creation_time, spec.end_time)
        return WrittenRun(run_hash, written, props, run.meta_records)

    def _write_with_aim_run(self, run_hash: str, data: RunData) -> Dict[str, int]:
        spec = data.spec
        run = self._open_aim_run(run_hash, spec.creation_time)
        try:
            run.name = spec.name
            run.experiment = spec.experiment
            if spec.description is not None:
                run.description = spec.description
            for key, value in spec.attributes.items():
                run[key] = value
            # the run's tags become the source's: a tag since removed (or whose value changed) goes
            existing_tags = {getattr(tag, 'name', tag) for tag in run.props.tags}
            for tag in sorted(existing_tags - set(spec.tags)):
                run.remove_tag(tag)
            for tag in spec.tags:
                if tag not in existing_tags:
                    run.add_tag(tag)
            return _write_series(run, data.series)
        finally:
            _close_run(run, end_time=spec.end_time)

    def _open_aim_run(self, run_hash: str, creation_time: Optional[float]) -> BasicRun:
        if self.repo.run_exists(run_hash):
            return BasicRun(run_hash, repo=self.repo)
        # the run's props (and so its creation time in the UI) are created before the run itself
        self.repo.request_props(run_hash, False, created_at=_utc(creation_time))
        _chosen_hash.value = run_hash
        try:
            return BasicRun(repo=self.repo)
        finally:
            _chosen_hash.value = None


def _write_series(run, series_list: List[Series]) -> Dict[str, int]:
    written: Dict[str, int] = {}
    context_ids: Dict[str, int] = {}  # a context's entry is written once per run, not once per sequence
    for series in series_list:
        if not len(series):
            continue
        key = json.dumps(series.context, sort_keys=True, default=repr)
        ctx_id = context_ids.get(key)
        if ctx_id is None:
            ctx_id = context_ids[key] = _context_ids(run, series.context)
        if series.kind == METRIC:
            _write_metric(run, series, ctx_id)
        else:
            _write_objects(run, series, ctx_id)
        written[series.kind] = written.get(series.kind, 0) + len(series)
    return written


class _LocalRun:
    """What ``BasicRun`` opens to write a run in a local repo, and no more: the run lock, the run's
    ``meta`` and ``seqs`` RocksDB containers, and the trees over them, under ``BasicRun``'s attribute
    names (so the sequence writers take either). The trees it leaves are the ones ``BasicRun``
    leaves (checked in tests/test_bulk_write.py); its SQLite props are left to ``index_runs``."""

    read_only = False

    def __init__(self, repo: Repo, run_hash: str):
        self.hash = run_hash
        self.repo = repo
        self._lock = repo.request_run_lock(run_hash)
        self._lock.lock()
        self._containers: List[RocksContainer] = []
        self._created = [path for path in map(self._path, ('meta', 'seqs')) if not os.path.exists(path)]
        self.meta_records: Optional[bytes] = None
        try:
            # opened directly, not through repo.request_container: its pool would hand a closed container
            # back to a later write of the same run in this process
            meta = self._open('meta').tree().subtree('meta')
            seqs = self._open('seqs').tree().subtree('seqs')
        except BaseException:
            self._release()
            raise
        # the meta trees as the sequence writers assign to them: gathered, committed once at close
        self._meta_records: List[bytes] = []
        self.meta_tree = _MetaWrites(self._meta_records, meta.container.prefix)
        self.meta_run_tree = _MetaWrites(self._meta_records, meta.subtree(('chunks', run_hash)).container.prefix)
        self.meta_attrs_tree = _MetaWrites(self._meta_records, meta.subtree('attrs').container.prefix)
        self.meta_run_attrs_tree = _MetaWrites(self._meta_records,
                                               meta.subtree(('chunks', run_hash, 'attrs')).container.prefix)
        self.series_run_trees = {1: seqs.subtree(('chunks', run_hash)), 2: seqs.subtree(('v2', 'chunks', run_hash))}
        try:  # as BasicRun.__init__: a run without attributes still has an (empty) attrs tree
            meta.subtree(('chunks', run_hash, 'attrs')).first_key()
        except (KeyError, StopIteration):
            self[...] = {}

    def _path(self, name: str) -> str:
        return os.path.join(self.repo.path, name, 'chunks', self.hash)

    def _open(self, name: str) -> RocksContainer:
        container = RocksContainer(self._path(name), read_only=False)
        self._containers.append(container)
        return container

    def discard(self) -> None:
        """Close without writing; containers this run's opening created are removed (a run prepared
        and never written must not appear in the repo)."""
        self._release()
        for path in self._created:
            shutil.rmtree(path, ignore_errors=True)

    def __setitem__(self, key, value) -> None:
        self.meta_run_attrs_tree[key] = value
        self.meta_attrs_tree[key] = value

    def close(self, end_time: Optional[float]) -> None:
        """Stamp the end time (the source's, else now, as Aim does), keep the meta container's records
        for the index (``meta_records``: the index step then need not reopen the run), and flush and
        close the containers."""
        try:
            if end_time is None:
                end_time = datetime.datetime.now(pytz.utc).timestamp()
            self.meta_run_tree['end_time'] = end_time
            _commit_records(self._containers[0], self._meta_records)
            self.meta_records = _pack_records(self._containers[0].items())
        finally:
            self._release()

    def _release(self) -> None:
        for container in self._containers:
            container.close()
        self._containers = []
        self._lock.release()


def _context_ids(run: BasicRun, context: Dict[str, Any]) -> int:
    ctx = Context(context)
    run.meta_tree['contexts', ctx.idx] = ctx.to_dict()
    run.meta_run_tree['contexts', ctx.idx] = ctx.to_dict()
    return ctx.idx


def _write_metric(run: BasicRun, series: Series, ctx_id: int) -> None:
    """One metric sequence in one batch, its metadata once (as ``RunTracker._track`` would leave it).

    The sequence is rewritten whole: its old points are deleted and all of the source's written, so a
    re-run adds new points and never duplicates one. On a local repo the keys and values are encoded
    here, in bulk (``_write_local_sequence``), straight into one RocksDB write batch; elsewhere (a remote
    repo's ``ProxyTree``) the generic ``TreeView.set`` carries the same tree.
    """
    name = series.name
    steps = np.asarray(series.steps, dtype=np.int64)
    values = np.asarray(series.values, dtype=np.float64)
    wall_times = np.asarray(series.wall_times, dtype=np.float64)
    tree = run.series_run_trees[2]
    sequence = tree.subtree((ctx_id, name))
    container = getattr(sequence, 'container', None)
    if isinstance(container, PrefixView) and isinstance(container.parent, RocksContainer):
        _write_local_sequence(container, steps, values, wall_times)
    else:
        step_list = steps.tolist()
        keys = [hash_auto(s) for s in step_list]
        tree.set((ctx_id, name), {
            'val': dict(zip(keys, values.tolist())),
            'step': dict(zip(keys, step_list)),
            'epoch': dict.fromkeys(keys),
            'time': dict(zip(keys, wall_times.tolist())),
        })
        for array_name in _ARRAYS:
            sequence.make_array(array_name)
    not_nan = values[~np.isnan(values)]
    run.meta_tree['traces_types', 'float', ctx_id, name] = 1
    run.meta_run_tree['typed_traces', 'metric', ctx_id, name] = 1
    info = {
        'dtype': 'float',
        'version': 2,
        'first': float(values[0]),
        'first_step': int(steps[0]),
        'last': float(values[-1]),
        'last_step': int(steps[-1]),
    }
    if not_nan.size:  # RunTracker's comparisons never make NaN a min or max (inf they do)
        info['min'] = float(not_nan.min())
        info['max'] = float(not_nan.max())
    run.meta_run_tree['traces', ctx_id, name] = info


_ARRAYS = ('val', 'step', 'epoch', 'time')
_ARRAY_PATHS = {name: _encoding.encode_path((name,)) for name in _ARRAYS}
_ARRAY_FLAG = _encoding.encode(ArrayFlag)
_PATH_SENTINEL = b'\xfe'
_NONE = _encoding.encode(None)
_FLOAT_TYPE = _encoding.encode(0.0)[0]
_INT_TYPE = _encoding.encode(0)[0]
# Aim's step key (hash_auto: a blake2b per step) is the slow part of encoding; steps repeat across the
# sequences of a run and across runs, so their encoded keys are cached (bounded).
_STEP_KEYS: Dict[int, bytes] = {}
_STEP_KEYS_MAX = 1 << 20


def _step_keys(steps: np.ndarray) -> np.ndarray:
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


def _encoded(type_id: int, column: np.ndarray, dtype: str) -> np.ndarray:
    """Aim's ``encoding.encode`` of every element at once: one type byte, then 8 little-endian bytes,
    as an (n, 9) byte array."""
    packed = np.empty(len(column), dtype=[('type', 'u1'), ('value', dtype)])
    packed['type'] = type_id
    packed['value'] = column
    return packed.view(np.uint8).reshape(len(column), 9)


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


def _put_records(key_prefix: bytes, step_keys: np.ndarray, values: np.ndarray) -> bytes:
    """Put records ``key_prefix + step key -> value`` for every row, in RocksDB's WriteBatch layout
    (tag, varint key length, key, varint value length, value), built as one byte matrix: every key and
    every value of an array have the same length."""
    head = np.frombuffer(_PUT + _varint(len(key_prefix) + step_keys.shape[1]) + key_prefix, dtype=np.uint8)
    middle = np.frombuffer(_varint(values.shape[1]), dtype=np.uint8)
    widths = (len(head), step_keys.shape[1], len(middle), values.shape[1])
    rows = np.empty((len(step_keys), sum(widths)), dtype=np.uint8)
    at = 0
    for width, part in zip(widths, (head, step_keys, middle, values)):
        rows[:, at:at + width] = part
        at += width
    return rows.tobytes()


_PUT, _DELETE_RANGE = b'\x01', b'\x0f'  # RocksDB's kTypeValue and kTypeRangeDeletion record tags


def _write_local_sequence(container: PrefixView, steps: np.ndarray, values: np.ndarray,
                          wall_times: np.ndarray) -> None:
    """The key/value pairs ``TreeView.set`` + ``make_array`` would write for the sequence, after a range
    delete of its old points, as one RocksDB write batch built in bulk: the batch's serialized form is
    assembled with numpy (``_put_records``) instead of one ``put`` call per key, four per point."""
    prefix = container.prefix
    rocks: RocksContainer = container.parent
    step_keys = _step_keys(steps)
    # RocksDB's memtable takes a batch of keys in sorted order about three times faster than in the
    # (hash-scattered) step order
    order = np.argsort(step_keys.view(f'S{step_keys.shape[1]}').ravel(), kind='stable')
    step_keys = step_keys[order]
    n = len(order)
    parts = [_record(_DELETE_RANGE, prefix, prefix + b'\xff')]
    columns = (  # in key order: epoch < step < time < val
        ('epoch', np.zeros((n, len(_NONE)), dtype=np.uint8) + np.frombuffer(_NONE, dtype=np.uint8)),
        ('step', _encoded(_INT_TYPE, steps[order], '<i8')),
        ('time', _encoded(_FLOAT_TYPE, wall_times[order], '<f8')),
        ('val', _encoded(_FLOAT_TYPE, values[order], '<f8')),
    )
    for array_name, encoded in columns:
        array_prefix = prefix + _ARRAY_PATHS[array_name]
        parts.append(_record(_PUT, array_prefix, _ARRAY_FLAG))
        parts.append(_put_records(array_prefix, step_keys, encoded))
    _commit_records(rocks, parts, count=1 + len(columns) * (n + 1))


def _write_objects(run, series: Series, ctx_id: int) -> None:
    """An object sequence (images, distributions, text, audio) in one batch, its metadata once: the tree
    ``RunTracker._track`` leaves after one call per point (checked key by key in
    tests/test_bulk_write.py), rewritten whole like a metric sequence. Object sequences are Aim's
    version-1 layout: values keyed by the step itself, no step array."""
    import connectors.aim_objects  # noqa: F401  registers the converters (lazily: it imports this module)
    convert = OBJECT_CONVERTERS[series.kind]
    objects = [convert(payload) for payload in series.values]
    # A tag with one sample at some steps and several at others: Aim takes a sequence of one type only,
    # so when any step holds a list, every step does.
    if any(isinstance(o, list) for o in objects):
        objects = [o if isinstance(o, list) else [o] for o in objects]
    steps = [int(s) for s in series.steps]
    if sorted(set(steps)) != steps:  # merged series are in step order, one point a step
        raise ValueError(f'{series.name}: object sequence steps must be unique and increasing')
    name = series.name
    tree = run.series_run_trees[1]
    value = {
        'val': dict(zip(steps, objects)),
        'epoch': dict.fromkeys(steps),
        'time': dict(zip(steps, (float(t) for t in series.wall_times))),
    }
    sequence = tree.subtree((ctx_id, name))
    container = getattr(sequence, 'container', None)
    if isinstance(container, PrefixView) and isinstance(container.parent, RocksContainer):
        _set_local_tree(container, value, arrays=('epoch', 'time', 'val'))
    else:
        tree.set((ctx_id, name), value)
        for array_name in ('epoch', 'time', 'val'):
            sequence.make_array(array_name)
    dtype = get_object_typename(objects[0])
    run.meta_tree['traces_types', dtype, ctx_id, name] = 1
    run.meta_run_tree['typed_traces', SEQUENCE_TYPE_MAP.get(dtype, 'sequence'), ctx_id, name] = 1
    info = {'dtype': dtype, 'version': 1, 'first': objects[0], 'first_step': steps[0],
            'last': objects[-1], 'last_step': steps[-1]}
    if isinstance(objects[0], list):
        info['record_max_length'] = max(len(o) for o in objects)
    run.meta_run_tree['traces', ctx_id, name] = info


def _set_local_tree(container: PrefixView, value: Dict[str, Any], arrays: Tuple[str, ...] = ()) -> None:
    """What ``TreeView.set((), value)`` and then ``make_array(name)`` for each of ``arrays`` write to a
    local container's subtree, as one RocksDB write batch assembled as bytes (``_assignment``). Not
    through ``TreeView.set``: Aim's ``unfold_tree`` deep-copies every object's storage twice, and
    ``RocksContainer.set`` adds a blob delete per key, which the range delete before it makes
    redundant."""
    records: List[bytes] = []
    _assignment(records, container.prefix, value)
    for name in arrays:
        records.append(_record(_PUT, container.prefix + _ARRAY_PATHS[name], _ARRAY_FLAG))
    _commit_records(container.parent, records)


def _assignment(records: List[bytes], key: bytes, value: Any) -> None:
    """The write-batch records of ``ContainerTreeView.set`` of ``value`` at the encoded path ``key``: a
    range delete of the path and of its blobs, then every record of the value unfolded, a blob as its
    sentinel and its bytes (as ``RocksContainer.set`` stores one)."""
    records.append(_record(_DELETE_RANGE, key, key + b'\xff'))
    records.append(_record(_DELETE_RANGE, BLOB_DOMAIN + key, BLOB_DOMAIN + key + b'\xff'))
    for sub, encoded in encode_paths_vals(_unfold_objects(value, ())):
        if isinstance(encoded, BLOB):
            records.append(_record(_PUT, key + sub, BLOB_SENTINEL))
            records.append(_record(_PUT, BLOB_DOMAIN + key + sub, bytes(encoded)))
        else:
            records.append(_record(_PUT, key + sub, encoded))


def _commit_records(rocks: RocksContainer, records: List[bytes], count: Optional[int] = None) -> None:
    """Write-batch records (``_record``) committed as one batch, in order; the list is emptied.
    ``count``: how many records the parts hold, when a part holds several (``_put_records``)."""
    if records:
        count = len(records) if count is None else count
        header = b'\x00' * 8 + count.to_bytes(4, 'little')  # sequence 0, record count
        rocks.commit(aimrocks.WriteBatch(header + b''.join(records)))
        records.clear()


class _MetaWrites:
    """A write-only view of a subtree of a run's meta container: ``tree[path] = value`` gathers the
    records ``ContainerTreeView`` would commit (``_assignment``) into a list shared by the run's meta
    views, committed in one batch when the run closes. A run's meta tree takes about five assignments
    per sequence; through Aim's trees each is its own commit."""

    __slots__ = ('_records', '_prefix')

    def __init__(self, records: List[bytes], prefix: bytes):
        self._records = records
        self._prefix = prefix

    def __setitem__(self, path, value) -> None:
        if path is Ellipsis:
            path = ()
        elif not isinstance(path, (tuple, list)):
            path = (path,)
        _assignment(self._records, self._prefix + _encoding.encode_path(path), value)


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


def _close_run(run: BasicRun, end_time: Optional[float]) -> None:
    """``run.close()``, but stamped with the source's end time, so the run shows as finished when the
    original run ended (not at the time of conversion)."""
    if end_time is not None:
        meta_run_tree = run.meta_run_tree
        run._resources.set_run_end_time = lambda: meta_run_tree.__setitem__('end_time', end_time)
        try:
            run.props.finalized_at = _utc(end_time)
        except Exception:  # remote props proxies may not take it; end_time in the meta tree is what counts
            logger.debug('could not set finalized_at for %s', run.hash, exc_info=True)
    run.close()


def _pack_records(items: Iterable[Tuple[bytes, Any]]) -> bytes:
    """A container's (key, value) records as one compressed bytes object. Values stored as blobs come
    as lazy ``BLOB``s reading through the container: they are loaded now, and flagged."""
    records = [(key, bytes(value.load()), True) if isinstance(value, BLOB) else (key, value, False)
               for key, value in items]
    return zlib.compress(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL), 1)


def _unpack_records(packed: bytes) -> Iterator[Tuple[bytes, Any]]:
    for key, value, is_blob in pickle.loads(zlib.decompress(packed)):
        yield key, (BLOB(data=value) if is_blob else value)


def index_runs(repo_uri: str, run_hashes: Iterable[str], props: Iterable[RunProps] = (),
               meta_records: Optional[Dict[str, bytes]] = None) -> int:
    """Make written runs visible to ``Repo.iter_runs``/queries at once (what ``aim storage reindex``
    does), after writing their deferred SQLite ``props`` in one transaction. Call once, from one
    process: both the index and SQLite are single-writer stores. On ``aim://`` the same calls run in
    the server (``aim server`` keeps no index manager, so remote runs would stay unlisted).

    A run whose ``meta_records`` (``WrittenRun.meta_records``) are given is indexed from them, in write
    batches of ``_INDEX_BATCH_RUNS`` runs; any other run's meta container is opened and read, as Aim does.

    The index is one RocksDB database with one writer at a time: another conversion's index step, or
    the index manager of an ``aim up`` serving the repo, may hold it. It is waited for (``_open_index``);
    if it stays held, ``IndexBusy`` is raised after the props are written: the runs are complete, and
    ``aim up``'s index manager indexes them itself (as it does runs written by Aim's own ``Run``, which
    never writes the index): every few seconds it indexes each run directory newer than its index."""
    hashes = sorted(set(run_hashes))
    repo = open_repo(repo_uri, create=False)
    props = sorted(props, key=lambda p: p.hash)
    if props:
        _write_props_retrying(repo, props)
    if not hashes:
        return 0
    meta_records = meta_records or {}
    # What aim.sdk.index_manager.RepoIndexManager.index does, without its file watchers (their threads
    # keep Aim's at-exit cleanup waiting): per run, ``finalize`` of its meta subtree into the index,
    # which clears the run's prefix in the index and copies every record of the run's meta container.
    index = _open_index(repo, len(hashes))
    for run_hash in hashes:
        if run_hash not in meta_records:
            repo.request_tree('meta', run_hash, read_only=True, skip_read_optimization=True) \
                .subtree('meta').subtree('chunks').subtree(run_hash).finalize(index=index)
    if meta_records:  # the same operations as finalize, from the kept records, in batches of runs
        index_container = index.container
        indexed = [run_hash for run_hash in hashes if run_hash in meta_records]
        for start in range(0, len(indexed), _INDEX_BATCH_RUNS):
            batch = index_container.batch()
            for run_hash in indexed[start:start + _INDEX_BATCH_RUNS]:
                prefix = _encoding.encode_path(('meta', 'chunks', run_hash))
                index_container.delete_range(prefix, prefix + b'\xff', store_batch=batch)
                for key, value in _unpack_records(meta_records[run_hash]):
                    index_container.set(key, value, store_batch=batch)
            index_container.commit(batch)
    return len(hashes)


_INDEX_BATCH_RUNS = 100  # a write batch holds ~2 MB of records for this many runs


class IndexBusy(Exception):
    """The repo's index stayed locked by another process for the whole wait."""

    def __init__(self, path: str, waited: float, runs: int):
        super().__init__(f'{path} stayed locked by another process for {waited:.0f} s; {runs} run(s) not indexed')
        self.runs = runs  # written, props too: aim up's index manager, or ``aim storage reindex``, indexes them


def index_wait_seconds() -> float:
    """How long ``index_runs`` waits for the index lock: ``RUNFERRY_INDEX_WAIT_SECONDS`` (default 60)."""
    return float(os.environ.get('RUNFERRY_INDEX_WAIT_SECONDS', '60'))


def _is_lock_busy(error: Exception) -> bool:
    """RocksDB's answer when another process holds a database's LOCK file (fcntl)."""
    text = str(error)
    return 'LOCK' in text and ('Resource temporarily unavailable' in text or 'lock hold' in text)


def _open_index(repo: Repo, runs: int = 0):
    """The repo's index tree, open for writing; while another process holds its lock, retried (every
    0.05 s, backing off to 1 s) for ``index_wait_seconds``, then ``IndexBusy``."""
    wait = index_wait_seconds()
    started = time.monotonic()
    delay = 0.05
    while True:
        try:
            return repo._get_index_tree('meta', 0).view(())
        except aimrocks.errors.RocksIOError as error:
            if not _is_lock_busy(error):
                raise
            waited = time.monotonic() - started
            if waited >= wait:
                raise IndexBusy(os.path.join(repo.path, 'meta', 'index'), waited, runs) from None
            time.sleep(min(delay, max(wait - waited, 0.0)))
            delay = min(delay * 2, 1.0)


_PROPS_ATTEMPTS = 5


def _write_props_retrying(repo: Repo, props: List[RunProps]) -> None:
    """``_write_props``, tried again when a concurrent writer committed first: an experiment or tag it
    created is then found as an existing row (names are unique in Aim's schema), and SQLite's own
    lock (busy for longer than its 5 s timeout) is waited for again."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(1, _PROPS_ATTEMPTS + 1):
        try:
            _write_props(repo, props)
            return
        except (IntegrityError, OperationalError) as error:
            transient = isinstance(error, IntegrityError) or 'database is locked' in str(error)
            if not transient or attempt == _PROPS_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)


def _write_props(repo: Repo, props: List[RunProps]) -> None:
    """Every run's SQLite row (what ``aim.Run`` commits five times per run), in one transaction, through
    Aim's own SQLAlchemy models: existing runs, experiments and tags are loaded in a few queries, not
    one per run (Aim's property setters flush on every assignment: ~12 ms a run at 1,000 runs). The
    creation time is set only when the row is created, as Aim does; everything else is the source's."""
    from aim.storage.structured.sql_engine.models import Experiment, Run, Tag
    from sqlalchemy.orm import selectinload

    # Aim's own session (a thread-local scoped session), so that Aim objects of this process that hold
    # rows see the commit (it expires them); it is neither closed nor left with autocommit off.
    session = repo.structured_db.get_session()
    autocommit = getattr(session, 'autocommit', True)
    session.autocommit = False
    try:
        runs = _rows_by(session, Run, Run.hash, [p.hash for p in props], selectinload(Run.tags))
        experiments = _rows_by(session, Experiment, Experiment.name, sorted({p.experiment for p in props}))
        tags = _rows_by(session, Tag, Tag.name, sorted({t for p in props for t in p.tags}))
        for p in props:
            row = runs.get(p.hash)
            if row is None:
                row = runs[p.hash] = Run(p.hash, created_at=_utc(p.created_at))
                session.add(row)
            row.name = p.name
            if p.experiment not in experiments:
                experiments[p.experiment] = Experiment(p.experiment)
            row.experiment = experiments[p.experiment]
            if p.description is not None:
                row.description = p.description
            row.finalized_at = _utc(p.finalized_at) or datetime.datetime.utcnow()
            # the run's tags become the source's: a tag since removed (or whose value changed) goes
            row.tags[:] = [tag for tag in row.tags if tag.name in p.tags]
            present = {tag.name for tag in row.tags}
            for name in p.tags:
                if name not in present:
                    if name not in tags:
                        tags[name] = Tag(name)
                    row.tags.append(tags[name])
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.autocommit = autocommit


def _rows_by(session, model, column, keys: List[str], *options) -> Dict[str, Any]:
    """{key: row} for the rows whose ``column`` is in ``keys`` (queried in slices: SQLite caps the
    number of bound parameters)."""
    rows = {}
    for start in range(0, len(keys), 500):
        for row in session.query(model).options(*options).filter(column.in_(keys[start:start + 500])):
            rows[getattr(row, column.key)] = row
    return rows
