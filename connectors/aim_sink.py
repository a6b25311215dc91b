"""Writing runs into an Aim repo (a local path or ``aim://host:port``), in bulk and idempotently:
``AimRunWriter``, which picks the way each run goes in.

Why not ``run.track``: it writes each point as several tree writes plus the sequence metadata
(last, min, max...) every time, about 3,000 points/s here. The storage path writes one sequence's value,
step, epoch and time arrays in one batch and its metadata once: on a local repo as RocksDB write-batch
records (``connectors.aim_local_run``, ``connectors.aim_sequences``, ``connectors.aim_storage``), on an
``aim://`` server through ``TreeView.set`` on the remote ``ProxyTree`` (``connectors.aim_sdk_run``
opens the run). That path writes Aim's private storage layout, so ``connectors.aim_version`` checks
the installed Aim against the versions it is tested with; with any other, runs go through Aim's own
tracker instead (``connectors.aim_sdk_run.TrackedSequences``), slower, with one warning line.

Idempotence without a local cache: a run's Aim hash is derived from its source identity
(``connectors.aim_run_hash``), so a re-run opens the same Aim run; each sequence is rewritten from the
source (points are keyed by step), so nothing is ever duplicated and newly logged points are added.

A local run's SQLite props (name, experiment, times, tags) are returned as ``RunProps`` and written
for all runs at once by ``index_runs`` (``connectors.aim_index``); runs written through Aim's SDK
have theirs written by Aim.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
from typing import Callable, Dict, List, Optional, Tuple, Union

from aim.sdk.run import BasicRun

from connectors import aim_staging, disk_guard
from connectors.aim_index import IndexBusy, RunProps, index_runs
from connectors.aim_local_run import LocalRun
from connectors.aim_objects import OBJECT_CONVERTERS
from connectors.aim_repo import is_remote, open_repo
from connectors.aim_run_hash import run_hash_for
from connectors.aim_sdk_run import TrackedSequences, close_sdk_run, open_sdk_run, set_run_props
from connectors.aim_sequences import RunSequences
from connectors.aim_version import write_path
from runmodel import RunData, RunSpec, Series, Skip, read_whole

# the writer's own names, and those its callers have always imported from here
__all__ = ['AimRunWriter', 'WrittenRun', 'materialize', 'run_hash_for', 'open_repo', 'is_remote', 'RunProps',
           'index_runs', 'IndexBusy', 'OBJECT_CONVERTERS']

logger = logging.getLogger(__name__)

AUTO = object()  # AimRunWriter's staging: chosen by connectors.aim_staging.staging_root


@dataclasses.dataclass(frozen=True)
class WrittenRun:
    hash: str
    points: Dict[str, int]  # by kind
    props: Optional[RunProps]  # None when already written (by Aim's SDK: remote repos, Aim's API path)
    # every record of the run's meta container as written, for the repo index (the storage path on local
    # repos only), packed by ``connectors.aim_local_run.pack_records``: one small bytes object a run (as
    # Python objects, the records of a few hundred runs held for the index step fragmented the heap by
    # ~0.4 MB a run)
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
    write and the next run's decoding. A run new to the repo is built in ``staging`` (a tmpfs, by default
    ``connectors.aim_staging.staging_root()``; None: in the repo) and published into the repo at its
    close, whole: no file is created or synced on the repo's disk while it is written."""

    def __init__(self, repo: str, staging: Union[str, None, object] = AUTO):
        self.repo_uri = repo
        self.repo = open_repo(repo, create=False)  # created by the launcher; init here would race
        # storage path or Aim's API (connectors.aim_version: its warning is logged here, once a process)
        self.through_api = write_path().through_api
        # where new runs are built before they are published into a local repo (connectors.aim_staging):
        # by default a tmpfs with room (RUNFERRY_AIM_STAGING chooses), None for in the repo
        self.staging: Optional[str] = aim_staging.staging_root() if staging is AUTO else staging
        if self.staging is not None:
            aim_staging.remove_stale_stages(self.staging)
        self._opening: Dict[str, concurrent.futures.Future] = {}
        self._opener: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def prepare(self, data: RunData) -> None:
        """Begin opening the run's containers (the storage path on local repos; a no-op otherwise)."""
        if self.repo.is_remote_repo or self.through_api:
            return
        run_hash = run_hash_for(data.spec.identity)
        if run_hash not in self._opening:
            if self._opener is None:
                self._opener = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='runferry-open')
            self._opening[run_hash] = self._opener.submit(LocalRun, self.repo, run_hash, self.staging)

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
        all: the run is not created (a run given whole, as MLflow's, is written even without a point). On
        the storage path to a local repo the run's SQLite props are returned, not written (``index_runs``)."""
        on_skip = on_skip or (lambda skip: None)
        run_hash = run_hash_for(data.spec.identity)
        if self.through_api:
            return self._write_through_api(run_hash, data, on_skip)
        if self.repo.is_remote_repo:
            return self._write_remote(run_hash, data, on_skip)
        return self._write_local(run_hash, data, on_skip)

    def _write_local(self, run_hash: str, data: RunData, on_skip: Callable[[Skip], None]) -> Optional[WrittenRun]:
        """The storage path into a local repo (``_write_local_once``). A run that outgrew the staging
        directory (``aim_staging.StagingFull``) turns staging off for this writer's later runs, and is
        written again in the repo when it is held whole (its dead letters are passed on once, from the
        attempt that wrote it); a streamed run is not read twice: it fails, and a re-run writes it."""
        if data.stream is not None:
            try:
                return self._write_local_once(run_hash, data, on_skip)
            except aim_staging.StagingFull as full:
                self._stop_staging(full)
                raise
        held: List[Skip] = []
        try:
            written = self._write_local_once(run_hash, data, held.append)
        except aim_staging.StagingFull as full:
            self._stop_staging(full)
            return self._write_local_once(run_hash, data, on_skip)
        except BaseException:
            for skip in held:  # met before the failure, as when they are passed on at once
                on_skip(skip)
            raise
        for skip in held:
            on_skip(skip)
        return written

    def _stop_staging(self, full: Exception) -> None:
        logger.warning('%s: writing the next runs in the repo', full)
        self.staging = None

    def _write_local_once(self, run_hash: str, data: RunData, on_skip: Callable[[Skip], None]
                          ) -> Optional[WrittenRun]:
        """The run's containers (opened ahead by ``prepare``, or now) written chunk by chunk as RocksDB
        write batches."""
        spec = data.spec
        opening = self._opening.pop(run_hash, None)
        # an open that failed raises here, and the write's retry opens the run in line
        run = opening.result() if opening is not None else LocalRun(self.repo, run_hash, self.staging)
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
        except BaseException as error:
            if run.stage is None:  # written in the repo: closed as far as it got (a re-run rewrites it)
                run.close(end_time=_end_time(spec, sequences))
                raise
            staged = run.stage
            try:
                run.discard()  # built in its stage: nothing of it reaches the repo
            except Exception as closing:
                logger.warning('closing the failed run %s: %s', run_hash, closing)
            if disk_guard.is_no_space(error):  # the stage filled, not the repo
                raise aim_staging.staging_full(staged) from None
            raise
        end_time = _end_time(spec, sequences)
        run.close(end_time=end_time)
        creation_time = spec.creation_time if spec.creation_time is not None else sequences.first_time
        props = RunProps(run_hash, spec.name, spec.experiment, spec.description, tuple(spec.tags),
                         creation_time, end_time)
        return WrittenRun(run_hash, written, props, run.meta_records, superseded=sequences.superseded,
                          contexts=sequences.contexts)

    def _write_remote(self, run_hash: str, data: RunData, on_skip: Callable[[Skip], None]) -> Optional[WrittenRun]:
        """The storage path into an ``aim://`` repo: the run merged whole (``materialize``), written
        through Aim's ``BasicRun`` and its trees, each sequence in one ``TreeView.set``."""
        whole, superseded = materialize(data, on_skip)
        if whole is None:
            return None
        return WrittenRun(run_hash, self._write_with_aim_run(run_hash, whole), None, superseded=superseded,
                          contexts=tuple(sorted({str(s.context) for s in whole.series})))

    def _write_with_aim_run(self, run_hash: str, data: RunData) -> Dict[str, int]:
        spec = data.spec
        run = open_sdk_run(self.repo, run_hash, spec.creation_time)
        try:
            set_run_props(run, spec)
            sequences = RunSequences(run, data.origin, lambda skip: None)
            sequences.write(data.series)
            return sequences.finish()
        finally:
            close_sdk_run(run, end_time=spec.end_time)

    def _write_through_api(self, run_hash: str, data: RunData, on_skip: Callable[[Skip], None]
                           ) -> Optional[WrittenRun]:
        """A run through Aim's own tracker, chunk by chunk as it is read (``connectors.aim_version``
        chose this path). The run is opened at its first point (a streamed source that held none makes
        no run); its props and attributes are set once the source is read (a stream may complete them)."""
        run: Optional[BasicRun] = None
        sequences: Optional[TrackedSequences] = None
        try:
            for item in data.items():
                if isinstance(item, Skip):
                    on_skip(item)
                    continue
                if run is None and any(len(series) for series in item):
                    run = open_sdk_run(self.repo, run_hash, _first_time(data.spec, item))
                    sequences = TrackedSequences(run, data.origin, on_skip)
                if sequences is not None:
                    sequences.write(item)
            if run is None:
                if data.stream is not None and not data.attribute_points:
                    return None
                run = open_sdk_run(self.repo, run_hash, data.spec.creation_time)
                sequences = TrackedSequences(run, data.origin, on_skip)
            set_run_props(run, data.spec)
            written = sequences.finish()
        finally:
            if run is not None:
                close_sdk_run(run, end_time=_end_time(data.spec, sequences))
        return WrittenRun(run_hash, written, None, superseded=sequences.superseded, contexts=sequences.contexts)


def _first_time(spec: RunSpec, chunk: List[Series]) -> Optional[float]:
    """A new run's creation time: the source's, else the first wall time of its first chunk (a later
    chunk may hold earlier points; the storage path takes the earliest of all, known only at the end)."""
    if spec.creation_time is not None:
        return spec.creation_time
    return min((min(series.wall_times) for series in chunk if len(series)), default=None)


def _end_time(spec: RunSpec, sequences) -> Optional[float]:
    """The source's end time, else the last wall time written (``RunSequences``, ``TrackedSequences``)."""
    return spec.end_time if spec.end_time is not None else sequences.last_time


materialize = read_whole  # the name this module has exported: a run merged whole, for aim:// servers


