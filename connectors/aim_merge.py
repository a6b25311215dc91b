"""Merging the runs of one Aim repo (``connectors.aim_repo_files``: local or on object storage) into a
local Aim repo, run by run, idempotent by run hash: what each run needs (``plan``), and doing it
(``merge``).

The order makes every step safe to interrupt (``kill -9``) and to repeat:

1. a batch of runs' SQLite rows (name, experiment, description, tags, archived flag, creation and
   finalization times, as the source holds them) is written in one transaction, through
   ``connectors.aim_index`` (a row with no containers is no run: Aim lists runs by their containers);
2. each run of the batch is downloaded into a staging directory in the target (``DOWNLOAD_THREADS``
   runs at once) and renamed into place (``connectors.aim_run_install``), one run at a time, in hash
   order: from that moment Aim sees a whole run, with its row already there (a run visible without
   its row would make Aim's queries fail: ``RepoIntegrityError``);
3. at the end the merged runs are indexed (``index_runs``); while an ``aim up`` holds the index, it
   indexes them itself (``IndexBusy``: the runs are counted as not yet indexed).

A run already in the target (same hash, same records) is left alone, its row too (it may have been
renamed or archived there since); same hash, other records: not touched, a dead letter. A run the
source's writer left open (a progress file), or one with no row in the source's SQLite store (its
conversion's index step never ran), is not merged: a dead letter each.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import tempfile
from typing import List, Optional

from connectors.aim_index import IndexBusy, RunProps, index_runs
from connectors.aim_repo_files import CONTAINER_KINDS, RepoFiles
from connectors.aim_run_install import Conflict, Staging, clear_stale_staging, indexed_hashes, install, is_present
from connectors.aim_run_rows import read_run_props
from connectors.retry import one_line
from runmodel import Skip

__all__ = ['RunPlan', 'plan', 'merge', 'MergeResult', 'NEW', 'IN_TARGET', 'NO_ROW', 'OPEN']

# what a run of the source needs, decided before anything is written
NEW = 'merge'
IN_TARGET = 'in target'  # by hash; the records are compared when merging
NO_ROW = 'no row in the source'
OPEN = 'open in the source'
_SKIP_REASONS = {
    NO_ROW: 'run has no row in the source repo\'s run_metadata.sqlite (the conversion that wrote it did not '
            'finish its index step: run it again, then merge)',
    OPEN: 'run was still open in the source repo (a progress file: its writer stopped before closing it; '
          'run the conversion again, then merge)',
}
CONFLICT_REASON = 'run hash exists in the target with other contents (not overwritten)'
FAILED_REASON = 'run could not be merged'

BATCH_RUNS = 100  # runs whose rows are written in one transaction, then copied
# runs downloaded at once: a download waits on the network (object storage answers each request in tens
# of milliseconds), so more than the cores
DOWNLOAD_THREADS = 8


@dataclasses.dataclass(frozen=True)
class RunPlan:
    hash: str
    action: str  # NEW, IN_TARGET, NO_ROW, OPEN
    props: Optional[RunProps]


def plan(source: RepoFiles, aim_dir: str) -> List[RunPlan]:
    """Every run of the source, in hash order, with what it needs; reads the source, writes nothing."""
    with tempfile.TemporaryDirectory(prefix='runferry-merge-') as scratch:
        sqlite_path = os.path.join(scratch, 'run_metadata.sqlite')
        source.download_sqlite(sqlite_path)
        rows = read_run_props(sqlite_path)
    opened = source.open_hashes()
    plans = []
    for run_hash in source.run_hashes():
        if run_hash not in rows:
            action = NO_ROW
        elif run_hash in opened:
            action = OPEN
        elif is_present(aim_dir, run_hash):
            action = IN_TARGET
        else:
            action = NEW
        plans.append(RunPlan(run_hash, action, rows.get(run_hash)))
    return plans


@dataclasses.dataclass
class MergeResult:
    merged: List[str] = dataclasses.field(default_factory=list)
    present: List[str] = dataclasses.field(default_factory=list)
    skipped: List[Skip] = dataclasses.field(default_factory=list)
    bytes_read: int = 0
    index_deferred: int = 0  # merged runs left for whoever holds the index (aim up) to index


def merge(source: RepoFiles, repo_path: str, plans: List[RunPlan]) -> MergeResult:
    """Merge the planned runs into the local repo at ``repo_path`` (see the module)."""
    aim_dir = os.path.join(repo_path, '.aim')
    clear_stale_staging(aim_dir)
    result = MergeResult()
    for run in plans:
        if run.action in _SKIP_REASONS:
            result.skipped.append(_letter(source, run, _SKIP_REASONS[run.action]))
    todo = [run for run in plans if run.action in (NEW, IN_TARGET)]
    with concurrent.futures.ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix='merge-download') as pool:
        for start in range(0, len(todo), BATCH_RUNS):
            batch = todo[start:start + BATCH_RUNS]
            new_rows = [run.props for run in batch if run.action == NEW]
            if new_rows:
                index_runs(repo_path, [], new_rows)  # the rows only: the runs are indexed once placed
            # downloaded in parallel, installed one at a time, in hash order, as each download is done
            for run, download in zip(batch, pool.map(lambda run: _download(source, aim_dir, run), batch)):
                _install(source, aim_dir, run, download, result)
    # a run found present was merged by a merge that may have stopped before its index step
    unindexed = set(result.present) - indexed_hashes(aim_dir, result.present)
    to_index = sorted(set(result.merged) | unindexed)
    if to_index:
        try:
            index_runs(repo_path, to_index)
        except IndexBusy as busy:  # aim up holds the index: it indexes the new run directories itself
            result.index_deferred = busy.runs
    return result


@dataclasses.dataclass
class _Download:
    staging: Optional[Staging]
    bytes_read: int = 0
    error: Optional[Exception] = None


def _download(source: RepoFiles, aim_dir: str, run: RunPlan) -> _Download:
    """The run's containers, staged in the target (never raises: a failure is returned, for ``_install``)."""
    staging = None
    try:
        staging = Staging(aim_dir, run.hash)
        copied = 0
        for kind in CONTAINER_KINDS:
            if kind == 'meta' or source.has_container(kind, run.hash):
                copied += source.download_container(kind, run.hash, staging.container(kind))
        return _Download(staging, copied)
    except Exception as error:
        if staging is not None:
            staging.remove()
        return _Download(None, error=error)


def _install(source: RepoFiles, aim_dir: str, run: RunPlan, download: _Download, result: MergeResult) -> None:
    """Place a downloaded run (``connectors.aim_run_install.install``), and count it in ``result``."""
    result.bytes_read += download.bytes_read
    if download.error is not None:
        result.skipped.append(_letter(source, run, f'{FAILED_REASON}: {one_line(download.error)}'))
        return
    try:
        placed = install(aim_dir, run.hash, download.staging)
    except Conflict as conflict:
        result.skipped.append(_letter(source, run, CONFLICT_REASON, str(conflict)))
        return
    except Exception as error:  # e.g. a staged container RocksDB cannot read
        result.skipped.append(_letter(source, run, f'{FAILED_REASON}: {one_line(error)}'))
        return
    finally:
        download.staging.remove()
    (result.merged if placed else result.present).append(run.hash)


def _letter(source: RepoFiles, run: RunPlan, reason: str, detail: Optional[str] = None) -> Skip:
    name = run.props.name if run.props is not None else None
    where = f'{source.resource} run {run.hash}' + (f' ({name})' if name else '')
    return Skip(where, reason, 'run', count=0, detail=detail)
