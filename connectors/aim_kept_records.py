"""Local runs' index records kept in files beside their repo until the index step.

The index step (``connectors.aim_index.index_runs``) runs once, after every run is written, and copies
each run's meta records into the repo's index. Passing those records through the pipeline held every
run's records (~100 KB a run) in the runner and in the indexing worker at once, so memory grew with the
number of runs. Instead each writer appends its runs' records to its own file,
``.aim/runferry-index-records/<pid>-<random>.records`` (``KeptRecords``), and hands on only where they
are: ``(path, offset, size)``; the index step reads them one run at a time (``RecordFiles``) and
removes the files once the runs are indexed (``discard``).

One file a writer, not one a run: a file created on the repo's disk, renamed into place and removed
again cost each small run more than its records did (on ext4: inode allocation, the journal; after the
index step's sync each removal waited ~0.5 ms, one run after another). Appends are unbuffered: a run's
bytes are in the file, for the index step in another process, when ``keep`` returns. A run's entry is the
format of ``connectors.aim_bucket_records`` (header, props, packed records), so a run's records are
read the same way from either file.

A file left by a killed conversion (its writer's process is gone) is removed by the next index step in
that repo (``remove_stale``); its runs were not indexed and are written again by the re-run. Files of
writers still alive, a concurrent conversion's, are left to it.
"""
from __future__ import annotations

import io
import os
import uuid
from typing import Dict, Iterable, Iterator, Mapping, Tuple, Union

from connectors.local_files import process_alive

__all__ = ['KEPT_DIR', 'KeptRecords', 'RecordFiles', 'discard', 'remove_stale']

KEPT_DIR = 'runferry-index-records'  # under the repo's .aim
_SUFFIX = '.records'
Where = Tuple[str, int, int]  # a run's entry: the file, its offset and size there


def kept_dir(repo_path: str) -> str:
    return os.path.join(os.path.abspath(repo_path), '.aim', KEPT_DIR)


class KeptRecords:
    """One writer's file of kept records, made at the first run kept (by this process: a writer
    unpickled in another process makes its own)."""

    def __init__(self, repo_path: str):
        self.directory = kept_dir(repo_path)
        self._file = None
        self._pid = None

    def keep(self, props, packed: bytes) -> Where:
        """Append a run's props and packed meta records (``WrittenRun.meta_records``, written as they
        were packed); returns where they are."""
        from connectors.aim_bucket_records import write_packed

        entry = io.BytesIO()
        write_packed(entry, props, packed)
        data = entry.getvalue()
        out = self._out()
        offset = out.tell()
        view = memoryview(data)
        while view:  # an unbuffered write may take part of the bytes
            view = view[out.write(view):]
        return out.name, offset, len(data)

    def _out(self):
        if self._file is None or self._pid != os.getpid():
            os.makedirs(self.directory, exist_ok=True)
            path = os.path.join(self.directory, f'{os.getpid()}-{uuid.uuid4().hex[:12]}{_SUFFIX}')
            self._file, self._pid = open(path, 'ab', buffering=0), os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class RecordFiles(Mapping):
    """{run hash: its meta records}, read one run at a time from where they were kept: a whole file (a
    bucket repo's index-records file) or ``(path, offset, size)`` (``KeptRecords``)."""

    def __init__(self, places: Dict[str, Union[str, Where]]):
        self._places = places

    def __getitem__(self, run_hash: str):
        from connectors.aim_bucket_records import read_records

        place = self._places[run_hash]
        if isinstance(place, str):
            with open(place, 'rb') as source:
                _, records = read_records(source)
            return records
        path, offset, size = place
        with open(path, 'rb') as source:
            source.seek(offset)
            entry = source.read(size)
        if len(entry) != size:
            raise OSError(f'{path}: the records kept at {offset} are cut short ({len(entry)} of {size} bytes)')
        _, records = read_records(io.BytesIO(entry))
        return records

    def __iter__(self) -> Iterator[str]:
        return iter(self._places)

    def __len__(self) -> int:
        return len(self._places)


def discard(places: Iterable[Union[str, Where]]) -> None:
    """Remove the files that held records of runs now indexed (each file once)."""
    for path in {place if isinstance(place, str) else place[0] for place in places}:
        _remove(path)


def remove_stale(repo_path: str) -> None:
    """Remove kept-records files whose writer process is gone (a killed conversion's)."""
    directory = kept_dir(repo_path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        pid = name.split('-', 1)[0]
        if name.endswith(_SUFFIX) and '-' in name and pid.isdigit() and not process_alive(int(pid)):
            _remove(os.path.join(directory, name))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
