"""The bucket repo's two ends: its creation (``create_bucket_repo``, before any work) and its final index
step (``index_bucket_runs``, once, from any one worker: workers share nothing but the bucket).

The index step makes the runs uploaded by ``connectors.aim_bucket_runs`` visible to Aim: it downloads the
repo's ``run_metadata.sqlite`` and ``meta/index`` into a temporary directory, writes the rows and index
records of the runs whose markers it is given there (``connectors.aim_index.index_runs``, the local
repos' code, from the runs' index-records files, downloaded alongside), and uploads the results:

* ``run_metadata.sqlite``: one object, replaced whole (a single PUT is atomic on GCS and S3);
* ``meta/index``: a RocksDB directory. Its new table files are uploaded first, then its other files,
  ``CURRENT`` last, and only then the files it no longer uses are removed, so a copy taken at any moment
  (or a kill at any moment) holds a consistent index, old or new. Table files are immutable: one already
  in the bucket with its size is not uploaded again;
* ``PREFIX/.runferry/indexed.json``: {run hash: marker} of the runs the uploaded rows and index hold,
  written last. A run whose marker is listed there is not indexed again: a re-run that changed nothing
  uploads nothing.

One conversion at a time per bucket repo: two index steps at once would each upload their own rows.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, Iterable, Iterator, Mapping, Tuple

from connectors.aim_bucket import AIM_DIR, RUNFERRY_DIR, BucketRepo
from connectors.aim_bucket_records import hash_of_record, read_props, read_records
from connectors.aim_bucket_runs import RECORDS_DIR, local_only, make_scratch_repo
from connectors.aim_index import index_runs

__all__ = ['create_bucket_repo', 'index_bucket_runs', 'INDEXED', 'SQLITE']

INDEXED = (RUNFERRY_DIR, 'indexed.json')
SQLITE = (AIM_DIR, 'run_metadata.sqlite')
INDEX_DIR = (AIM_DIR, 'meta', 'index')


def create_bucket_repo(bucket: BucketRepo) -> bool:
    """Make the prefix an empty Aim repo (what Aim's ``Repo(init=True)`` makes, uploaded), unless it is
    one already (its ``run_metadata.sqlite`` exists: uploaded last). True if it was created."""
    from aim.sdk.repo import Repo

    if bucket.exists(*SQLITE):
        return False
    staging = tempfile.mkdtemp(prefix='runferry-bucket-init-')
    try:
        Repo(staging, init=True).close()
        aim_dir = os.path.join(staging, AIM_DIR)
        files = [(path, (AIM_DIR, *relative)) for path, relative in _local_files(aim_dir)
                 if relative != SQLITE[1:]]
        bucket.put_files(files)
        bucket.put_file(os.path.join(aim_dir, *SQLITE[1:]), *SQLITE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _local_files(root: str) -> Iterator[Tuple[str, Tuple[str, ...]]]:
    """(path, parts relative to ``root``) of every file under ``root``, except RocksDB's lock files."""
    for directory, _, names in os.walk(root):
        relative = os.path.relpath(directory, root)
        prefix = () if relative == '.' else tuple(relative.split(os.sep))
        for name in sorted(names):
            if not local_only(name) and not name.endswith('.softlock'):
                yield os.path.join(directory, name), (*prefix, name)


def read_indexed(bucket: BucketRepo) -> Dict[str, str]:
    if not bucket.exists(*INDEXED):
        return {}
    return json.loads(bucket.read_bytes(*INDEXED))


class _RecordFiles(Mapping):
    """{run hash: its meta records}, read from the downloaded index-records files one run at a time."""

    def __init__(self, paths: Dict[str, str]):
        self._paths = paths

    def __getitem__(self, run_hash: str):
        with open(self._paths[run_hash], 'rb') as source:
            _, records = read_records(source)
        return records

    def __iter__(self):
        return iter(self._paths)

    def __len__(self):
        return len(self._paths)


def index_bucket_runs(bucket: BucketRepo, records: Iterable[str]) -> int:
    """Index the runs whose markers are ``records`` (names of their index-records files) and are not
    indexed yet (see the module); the number indexed now."""
    indexed = read_indexed(bucket)
    todo = sorted({name for name in records if indexed.get(hash_of_record(name)) != name})
    if not todo:
        return 0
    scratch = tempfile.mkdtemp(prefix='runferry-bucket-index-')
    try:
        root = make_scratch_repo(os.path.join(scratch, 'repo'))
        remote_index = {name: size for name, size in bucket.list_files(*INDEX_DIR).items() if not local_only(name)}
        paths = {hash_of_record(name): os.path.join(scratch, 'records', name) for name in todo}
        bucket.get_files([(SQLITE, os.path.join(root, *SQLITE)),
                          *[((*INDEX_DIR, name), os.path.join(root, *INDEX_DIR, name)) for name in remote_index],
                          *[((*RECORDS_DIR, name), paths[hash_of_record(name)]) for name in todo]])
        props = []
        for path in paths.values():
            with open(path, 'rb') as source:
                props.append(read_props(source))
        index_runs(root, sorted(paths), props, _RecordFiles(paths))
        _close_repo(root)
        bucket.put_file(os.path.join(root, *SQLITE), *SQLITE)
        _upload_index(bucket, os.path.join(root, *INDEX_DIR), remote_index)
        indexed.update({hash_of_record(name): name for name in todo})
        bucket.write_bytes(json.dumps(indexed, sort_keys=True).encode(), *INDEXED)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return len(todo)


def _close_repo(root: str) -> None:
    """Flush and close the index database and the SQLite engine of the repo ``index_runs`` opened, so
    that the files on disk are whole before they are uploaded."""
    from aim.sdk.repo import Repo

    repo = Repo.from_path(os.path.abspath(root))
    for container in list(repo.container_pool.values()) + list(repo.persistent_pool.values()):
        container.close()
    if repo.structured_db is not None:
        repo.structured_db.engine.dispose()
    repo.close()
    Repo._pool.pop(repo.root_path, None)


def _upload_index(bucket: BucketRepo, local_dir: str, remote: Dict[str, int]) -> None:
    """The index directory uploaded crash-consistently: new table files, other files, ``CURRENT``; then
    what it no longer holds is removed."""
    local = {name: os.path.getsize(os.path.join(local_dir, name)) for name in os.listdir(local_dir)
             if os.path.isfile(os.path.join(local_dir, name)) and not local_only(name)}
    tables = [n for n in local if n.endswith('.sst') and remote.get(n) != local[n]]
    others = [n for n in local if not n.endswith('.sst') and n != 'CURRENT']
    for names in (tables, others, ['CURRENT'] if 'CURRENT' in local else []):
        bucket.put_files([(os.path.join(local_dir, n), (*INDEX_DIR, n)) for n in sorted(names)])
    bucket.remove([(*INDEX_DIR, n) for n in sorted(set(remote) - set(local))])
