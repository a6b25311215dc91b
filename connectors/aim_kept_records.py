"""A local run's index records kept in a file beside its repo until the index step.

The index step (``connectors.aim_index.index_runs``) runs once, after every run is written, and copies
each run's meta records into the repo's index. Passing those records through the pipeline held every
run's records (~100 KB a run) in the runner and in the indexing worker at once, so memory grew with the
number of runs. Instead each writer keeps a run's records in ``.aim/runferry-index-records/<hash>.records``
(the format of ``connectors.aim_bucket_records``) and hands on only the file's path; the index step
reads the files one run at a time (``RecordFiles``) and removes them once the runs are indexed.

A file left by a killed conversion is rewritten by the re-run that writes its run again, and removed
once that run is indexed.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Iterator, Mapping

__all__ = ['KEPT_DIR', 'keep_records', 'RecordFiles', 'discard']

KEPT_DIR = 'runferry-index-records'  # under the repo's .aim


def keep_records(repo_path: str, props, meta_records: bytes) -> str:
    """Write a run's packed meta records (``WrittenRun.meta_records``, written as they are packed) and
    props to its file, whole (a temporary name renamed into place); returns the file's path."""
    from connectors.aim_bucket_records import write_packed

    directory = os.path.join(os.path.abspath(repo_path), '.aim', KEPT_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f'{props.hash}.records')
    temporary = f'{path}.{os.getpid()}.tmp'
    try:
        with open(temporary, 'wb') as out:
            write_packed(out, props, meta_records)
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    return path


class RecordFiles(Mapping):
    """{run hash: its meta records}, read from the runs' record files one run at a time."""

    def __init__(self, paths: Dict[str, str]):
        self._paths = paths

    def __getitem__(self, run_hash: str):
        from connectors.aim_bucket_records import read_records

        with open(self._paths[run_hash], 'rb') as source:
            _, records = read_records(source)
        return records

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def discard(paths: Iterable[str]) -> None:
    """Remove record files whose runs are indexed."""
    for path in paths:
        _remove(path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
