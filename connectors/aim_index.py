"""Making written runs visible in an Aim repo: their rows in Aim's SQLite store and the repo index.

A local run written by ``connectors.aim_local_run`` has no SQLite row yet: its ``RunProps`` are written
here for all runs at once, in one transaction (SQLite is a single-writer store). The index (what ``aim
storage reindex`` builds) is one RocksDB database with one writer at a time; ``index_runs`` copies each
run's meta records into it, from the records the writer kept or from the run's container. Runs written
through Aim's SDK (``aim://`` repos, and any repo when ``connectors.aim_version`` chose Aim's API) are
indexed by Aim's own ``finalize``, as its index manager does.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import aimrocks

from aim.sdk.repo import Repo
from aim.storage import encoding as _encoding
from aim.storage.rockscontainer import RocksContainer

from connectors import aim_staging
from connectors.aim_record_frames import unpack_records
from connectors.aim_repo import open_repo, utc_datetime
from connectors.aim_version import write_path

__all__ = ['RunProps', 'index_runs', 'IndexBusy', 'index_wait_seconds']


@dataclasses.dataclass(frozen=True)
class RunProps:
    """A run's row in Aim's SQLite store, written later, with every other run's, by ``index_runs``."""
    hash: str
    name: str
    experiment: Optional[str]  # None only for a row merged from a repo that holds none (pipelines.merge_aim)
    description: Optional[str] = None
    tags: Tuple[str, ...] = ()
    created_at: Optional[float] = None
    finalized_at: Optional[float] = None
    archived: Optional[bool] = None  # None: left as it is (a new row: not archived, Aim's default)


def index_runs(repo_uri: str, run_hashes: Iterable[str], props: Iterable[RunProps] = (),
               meta_records: Optional[Mapping[str, Union[bytes, Iterable[Tuple[bytes, Any]]]]] = None) -> int:
    """Make written runs visible to ``Repo.iter_runs``/queries at once (what ``aim storage reindex``
    does), after writing their deferred SQLite ``props`` in one transaction. Call once, from one
    process: both the index and SQLite are single-writer stores. On ``aim://`` the same calls run in
    the server (``aim server`` keeps no index manager, so remote runs would stay unlisted).

    A run whose ``meta_records`` (``WrittenRun.meta_records``, or its records as read from a bucket repo's
    index-records file, ``connectors.aim_bucket_index``) are given is indexed from them, in write
    batches of ``_INDEX_BATCH_RUNS`` runs; any other run's meta container is opened and read, as Aim does
    (by Aim's own ``finalize`` for runs written through Aim's SDK).

    The index is one RocksDB database with one writer at a time: another conversion's index step, or
    the index manager of an ``aim up`` serving the repo, may hold it. It is waited for (``_open_index``);
    if it stays held, ``IndexBusy`` is raised after the props are written: the runs are complete, and
    ``aim up``'s index manager indexes them itself (as it does runs written by Aim's own ``Run``, which
    never writes the index): every few seconds it indexes each run directory newer than its index."""
    hashes = sorted(set(run_hashes))
    repo = open_repo(repo_uri, create=False)
    props = sorted(props, key=lambda p: p.hash)
    if not repo.is_remote_repo and (props or hashes):
        # runs published from a stage were not synced one by one (connectors.aim_staging): once here,
        # before their rows and index entries make them visible
        aim_staging.barrier(repo.path)
    if props:
        _write_props_retrying(repo, props)
    if not hashes:
        return 0
    meta_records = meta_records or {}
    # What aim.sdk.index_manager.RepoIndexManager.index does, without its file watchers (their threads
    # keep Aim's at-exit cleanup waiting): per run, ``finalize`` of its meta subtree into the index,
    # which clears the run's prefix in the index and copies every record of the run's meta container.
    index = _open_index(repo, len(hashes))
    try:
        through_aim = repo.is_remote_repo or write_path().through_api
        for run_hash in hashes:
            if run_hash not in meta_records:
                if through_aim:  # Aim's finalize (run by the server on aim:// repos)
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
                    records = meta_records[run_hash]  # packed bytes, or (key, value) records read from a file
                    for key, value in (unpack_records(records) if isinstance(records, bytes) else records):
                        index_container.set(key, value, store_batch=batch)
                index_container.commit(batch)
    except BaseException:
        if not repo.is_remote_repo:
            _discard_index(repo)
        raise
    return len(hashes)


def _discard_index(repo: Repo) -> None:
    """After a failed index write (a full disk), close the index now, its own error swallowed (the
    caller's is the one reported): left open, Aim's finalizer flushes it again at the process's exit,
    fails the same way and prints a traceback. Aim's close stops at the failing flush, before releasing
    the container's lock, which is released here."""
    container = repo._get_index_container('meta', 0)  # the pool's, which _open_index's view is of
    resources = getattr(container, '_resources', None)
    try:
        container.close()
    except Exception:
        pass
    lock = getattr(resources, '_lock', None)
    if lock is not None:
        try:
            lock.release()
        except Exception:
            pass


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
        experiments = _rows_by(session, Experiment, Experiment.name,
                               sorted({p.experiment for p in props if p.experiment is not None}))
        tags = _rows_by(session, Tag, Tag.name, sorted({t for p in props for t in p.tags}))
        for p in props:
            row = runs.get(p.hash)
            if row is None:
                row = runs[p.hash] = Run(p.hash, created_at=utc_datetime(p.created_at))
                session.add(row)
            row.name = p.name
            if p.experiment is not None:  # (a row merged from a repo whose run has none keeps none)
                if p.experiment not in experiments:
                    experiments[p.experiment] = Experiment(p.experiment)
                row.experiment = experiments[p.experiment]
            if p.description is not None:
                row.description = p.description
            if p.archived is not None:
                row.is_archived = p.archived
            row.finalized_at = utc_datetime(p.finalized_at) or datetime.datetime.utcnow()
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
