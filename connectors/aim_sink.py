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
import logging
import os
import pickle
import shutil
import threading
import time
import zlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import aimrocks
import pytz

import aim.sdk.base_run as _aim_base_run
from aim.sdk.repo import Repo
from aim.sdk.run import BasicRun
from aim.storage import encoding as _encoding
from aim.storage.rockscontainer import RocksContainer
from aim.storage.utils import BLOB

from connectors import aim_storage as storage
from connectors import disk_guard
from connectors.aim_objects import OBJECT_CONVERTERS
from connectors.aim_sequences import RunSequences
from runmodel import SUPERSEDED_REASON, RunData, RunSpec, Series, Skip, merge_series

__all__ = ['run_hash_for', 'open_repo', 'is_remote', 'AimRunWriter', 'WrittenRun', 'RunProps', 'index_runs',
           'materialize', 'IndexBusy', 'OBJECT_CONVERTERS']

logger = logging.getLogger(__name__)


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
# RocksDB databases opened for writing fail on a full disk instead of hanging (see connectors.disk_guard)
disk_guard.install()


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
    superseded: int = 0  # points read and not written: a later point at the same step won
    contexts: Tuple[str, ...] = ()  # the contexts of the run's sequences


class AimRunWriter:
    """Writes whole runs into one repo. One instance per worker; runs are written one at a time.

    ``prepare(data)`` begins opening a run's containers in a background thread, for a ``write`` of it
    that comes later (``transforms.aim_write.WriteRunsFn`` prepares each run one write ahead). Creating a
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
            try:
                run.discard()
            except Exception as error:  # its flush failed (a full disk): it is closed and removed anyway
                logger.warning('closing prepared run %s: %s', run.hash, error)
        if self._opener is not None:
            self._opener.shutdown()
            self._opener = None

    def write(self, data: RunData, on_skip: Optional[Callable[[Skip], None]] = None) -> Optional[WrittenRun]:
        """Write (or rewrite) one run, reading its series chunk by chunk as they are written (memory is
        bounded by a chunk, not by the run). Dead letters met while reading, and one per sequence with
        superseded points, go to ``on_skip``. None when a streamed source (event files) held no point at
        all: the run is not created (a run given whole, as MLflow's, is written even without a point). On a local repo the run's SQLite props are returned, not written (``index_runs``)."""
        on_skip = on_skip or (lambda skip: None)
        spec = data.spec
        run_hash = run_hash_for(spec.identity)
        if self.repo.is_remote_repo:
            whole, superseded = materialize(data, on_skip)
            if whole is None:
                return None
            return WrittenRun(run_hash, self._write_with_aim_run(run_hash, whole), None, superseded=superseded,
                              contexts=tuple(sorted({str(s.context) for s in whole.series})))
        opening = self._opening.pop(run_hash, None)
        # an open that failed raises here, and the write's retry opens the run in line
        run = opening.result() if opening is not None else _LocalRun(self.repo, run_hash)
        sequences = RunSequences(run, data.origin, on_skip)
        try:
            for item in data.items():
                if isinstance(item, Skip):
                    on_skip(item)
                    continue
                sequences.write(item)
            if data.stream is not None and not sequences.points and not data.attribute_points:
                run.discard()  # its files held nothing: no run (containers this write created are removed)
                return None
            for key, value in spec.attributes.items():
                run[key] = value
            written = sequences.finish()
        except BaseException:
            run.close(end_time=_end_time(spec, sequences))
            raise
        end_time = _end_time(spec, sequences)
        run.close(end_time=end_time)
        creation_time = spec.creation_time if spec.creation_time is not None else sequences.first_time
        props = RunProps(run_hash, spec.name, spec.experiment, spec.description, tuple(spec.tags),
                         creation_time, end_time)
        return WrittenRun(run_hash, written, props, run.meta_records, superseded=sequences.superseded,
                          contexts=sequences.contexts)

    def _write_with_aim_run(self, run_hash: str, data: RunData) -> Dict[str, int]:
        """A run given whole (``materialize``), through Aim's ``BasicRun`` (remote repos)."""
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
            sequences = RunSequences(run, data.origin, lambda skip: None)
            sequences.write(data.series)
            return sequences.finish()
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


def _end_time(spec: RunSpec, sequences: RunSequences) -> Optional[float]:
    return spec.end_time if spec.end_time is not None else sequences.last_time


def materialize(data: RunData, on_skip: Callable[[Skip], None]) -> Tuple[Optional[RunData], int]:
    """The run with all its series read and merged, one ``Series`` per sequence (for writers that take a
    run whole: ``aim://`` servers; its memory grows with the run), and the number of points superseded.
    Dead letters of reading and of superseded points go to ``on_skip``; None when a streamed source held
    no point."""
    parts: Dict[Tuple[str, str, str], List[Series]] = {}
    for item in data.items():
        if isinstance(item, Skip):
            on_skip(item)
            continue
        for series in item:
            if len(series):
                parts.setdefault(series.key, []).append(series)
    if data.stream is not None and not parts and not data.attribute_points:
        return None, 0
    merged, total = [], 0
    for key in sorted(parts):
        series, superseded = merge_series(parts[key])
        merged.append(series)
        total += superseded
        if superseded:
            on_skip(Skip(data.origin, SUPERSEDED_REASON, 'point', count=superseded, detail=f'{series.name} {key[2]}'))
    spec = dataclasses.replace(data.spec)
    if merged and spec.creation_time is None:
        spec.creation_time = min(min(s.wall_times) for s in merged)
    if merged and spec.end_time is None:
        spec.end_time = max(max(s.wall_times) for s in merged)
    return RunData(spec, merged, dict(data.attribute_points)), total


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
        # the meta trees as the sequence writers assign to them: gathered, committed at close (or when
        # they grow large: a run of many sequences)
        # A container this open created holds nothing to delete: no range deletes before its writes.
        # RocksDB keeps every range tombstone in memory, and a run of 200,000 tags made over a million
        # (two an assignment, several assignments a sequence): 1.1 GB at peak, of which they were about
        # half (measured at 50,000 tags: 565 -> 405 MB).
        replace_meta = self._path('meta') not in self._created
        self.fresh_seqs = self._path('seqs') in self._created  # read by connectors.aim_sequences
        self._meta_records = storage.RecordBatch(self._containers[0])
        self.meta_tree = storage.MetaWrites(self._meta_records, meta.container.prefix, replace_meta)
        self.meta_run_tree = storage.MetaWrites(self._meta_records, meta.subtree(('chunks', run_hash)).container.prefix,
                                                replace_meta)
        self.meta_attrs_tree = storage.MetaWrites(self._meta_records, meta.subtree('attrs').container.prefix,
                                                  replace_meta)
        self.meta_run_attrs_tree = storage.MetaWrites(self._meta_records,
                                                      meta.subtree(('chunks', run_hash, 'attrs')).container.prefix,
                                                      replace_meta)
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
        try:
            self._release()
        finally:
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
            self._meta_records.commit()
            self.meta_records = _pack_records(self._containers[0].items())
        finally:
            self._release()

    def _release(self) -> None:
        """Close the containers and release the run lock, whatever fails; then raise the first error."""
        containers, self._containers = self._containers, []
        try:
            error = disk_guard.close_containers(containers)
        finally:
            self._lock.release()
        if error is not None:
            raise error


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


def _pack_records(items: Iterable[Tuple[bytes, Any]]) -> Optional[bytes]:
    """A container's (key, value) records as one compressed bytes object. Values stored as blobs come
    as lazy ``BLOB``s reading through the container: they are loaded now, and flagged. None for a
    container of more than ``_PACK_MAX_BYTES`` (a run of many sequences or large objects): the index
    step then reads it from the container, in bounded batches."""
    records, size = [], 0
    for key, value in items:
        if isinstance(value, BLOB):
            value, is_blob = bytes(value.load()), True
        else:
            is_blob = False
        size += len(key) + len(value)
        if size > _PACK_MAX_BYTES:
            return None
        records.append((key, value, is_blob))
    return zlib.compress(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL), 1)


_PACK_MAX_BYTES = 4 << 20  # a typical run's meta container is ~50 KB


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
            if repo.is_remote_repo:  # Aim's finalize, run by the server
                repo.request_tree('meta', run_hash, read_only=True, skip_read_optimization=True) \
                    .subtree('meta').subtree('chunks').subtree(run_hash).finalize(index=index)
            else:
                _index_from_container(repo, index.container, run_hash)
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
_INDEX_BATCH_RECORDS = 50_000


def _index_from_container(repo: Repo, index_container, run_hash: str) -> None:
    """What Aim's ``finalize`` of a run's meta subtree does to the index (clear the run's prefix, copy
    every record of its meta container), read from the container and committed in batches of
    ``_INDEX_BATCH_RECORDS`` (``finalize`` commits each record alone, and a run of 200,000 sequences
    holds millions)."""
    container = RocksContainer(os.path.join(repo.path, 'meta', 'chunks', run_hash), read_only=True,
                               skip_read_optimization=True)
    try:
        prefix = _encoding.encode_path(('meta', 'chunks', run_hash))
        batch = index_container.batch()
        index_container.delete_range(prefix, prefix + b'\xff', store_batch=batch)
        held = 0
        for key, value in container.items():
            index_container.set(key, value, store_batch=batch)
            held += 1
            if held >= _INDEX_BATCH_RECORDS:
                index_container.commit(batch)
                batch, held = index_container.batch(), 0
        index_container.commit(batch)
    finally:
        container.close()


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
