"""Writing runs into an Aim repo on object storage, one worker's share: ``BucketRunWriter``.

Each run is written with the local fast path (``connectors.aim_sink.AimRunWriter``) into a scratch repo
in a worker-local temporary directory, then uploaded whole under the bucket repo's prefix, and its local
files removed (the worker's disk holds one run at a time, plus the one opened ahead):

1. its index-records file is made (``connectors.aim_bucket_records``), named by the run's hash and the
   digest of its content;
2. if the bucket already holds exactly that file, the run is there, equal: nothing is uploaded;
3. otherwise the run's old marker is removed first (from then on the run is absent), then its old
   container files, then its new containers are uploaded (``.aim/meta/chunks/<hash>/…``,
   ``.aim/seqs/chunks/<hash>/…``), and the index-records file last: the marker. A run killed midway has
   no marker, and a re-run uploads it again.

The SQLite rows and the index are written once at the end from the markers
(``connectors.aim_bucket_index``); only the markers' names travel through the pipeline.
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
from typing import Callable, List, Optional, Set, Tuple

from aim.sdk.data_version import DATA_VERSION
from aim.storage.rockscontainer import RocksContainer

from connectors.aim_bucket import AIM_DIR, RUNFERRY_DIR, BucketRepo
from connectors.aim_bucket_records import content_digest, hash_of_record, record_name, write_packed, write_records
from connectors.aim_record_frames import plain_records, unpack_records
from connectors.aim_sink import AimRunWriter, WrittenRun
from runmodel import RunData, Skip

__all__ = ['BucketRunWriter', 'UploadedRun', 'make_scratch_repo', 'RECORDS_DIR', 'CONTAINER_KINDS', 'local_only']

RECORDS_DIR = (RUNFERRY_DIR, 'index-records')
CONTAINER_KINDS = ('meta', 'seqs')  # a run's two RocksDB containers: .aim/<kind>/chunks/<hash>/


def local_only(name: str) -> bool:
    """A RocksDB file not worth uploading: its lock file (made by whoever opens the database) and its
    informational logs (``LOG``, ``LOG.old.*``; a database opens without them)."""
    return name == 'LOCK' or name == 'LOG' or name.startswith('LOG.old')



@dataclasses.dataclass(frozen=True)
class UploadedRun(WrittenRun):
    """A run written and uploaded: ``record`` names its index-records file (its marker); ``uploaded`` is
    False when the bucket already held it, equal."""
    record: str = ''
    uploaded: bool = True


def make_scratch_repo(root: str) -> str:
    """An empty local Aim repo for the storage path's writes: the directories and ``VERSION`` Aim checks
    when it opens a repo, and no SQLite store (the storage path defers the run rows to the index step;
    creating the store is Aim's schema migration, ~2.5 s)."""
    aim_dir = os.path.join(root, AIM_DIR)
    os.makedirs(os.path.join(aim_dir, 'locks'), exist_ok=True)
    with open(os.path.join(aim_dir, 'VERSION'), 'w') as out:
        out.write('.'.join(map(str, DATA_VERSION)) + '\n')
    return root


class BucketRunWriter:
    """One worker's writer into the bucket repo ``bucket``: ``prepare``/``write``/``discard_prepared``
    as ``AimRunWriter``'s (``transforms.aim_write.WriteRunsFn`` drives either), and ``close``."""

    def __init__(self, bucket: BucketRepo):
        self.bucket = bucket
        self.scratch = tempfile.mkdtemp(prefix='runferry-bucket-')
        atexit.register(shutil.rmtree, self.scratch, True)  # a worker process may exit without teardown
        make_scratch_repo(self.scratch)
        self.local = AimRunWriter(self.scratch)
        self._present_at_start: Optional[Set[str]] = None  # run hashes of which the bucket held anything

    def prepare(self, data: RunData) -> None:
        self.local.prepare(data)

    def discard_prepared(self) -> None:
        self.local.discard_prepared()

    def close(self) -> None:
        self.discard_prepared()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def write(self, data: RunData, on_skip: Optional[Callable[[Skip], None]] = None) -> Optional[UploadedRun]:
        """Write the run locally, then upload it whole (see the module); None when the source held no
        point (no run). The local files are removed either way."""
        written = self.local.write(data, on_skip)
        if written is None:
            return None
        try:
            record, uploaded = self._upload(written)
        finally:
            self._remove_local(written.hash)
        return UploadedRun(written.hash, written.points, None, None, superseded=written.superseded,
                           contexts=written.contexts, record=record, uploaded=uploaded)

    def _container_dir(self, kind: str, run_hash: str) -> str:
        return os.path.join(self.scratch, AIM_DIR, kind, 'chunks', run_hash)

    def _upload(self, written: WrittenRun) -> Tuple[str, bool]:
        run_hash = written.hash
        records_path = os.path.join(self.scratch, f'{run_hash}.records')
        with open(records_path, 'wb') as out:
            if written.meta_records is not None:  # packed at the run's close: written as they are
                write_packed(out, written.props, written.meta_records)
            else:
                write_records(out, written.props, self._meta_records(written))
        digest = content_digest(written.props, self._meta_records(written), self._container_records('seqs', run_hash))
        name = record_name(run_hash, digest)
        if run_hash in self._present():  # a copy of the run, whole or not: compared, else removed first
            present = self.bucket.glob(*RECORDS_DIR, f'{run_hash}.*')
            if present == [name]:
                return name, False
            # from here until its new marker is up, the run is absent
            self.bucket.remove([(*RECORDS_DIR, old) for old in present])
            for kind in CONTAINER_KINDS:
                self.bucket.remove_tree(AIM_DIR, kind, 'chunks', run_hash)
        self.bucket.put_files(self._container_files(run_hash))
        self.bucket.put_file(records_path, *RECORDS_DIR, name)
        return name, True

    def _present(self) -> Set[str]:
        """The runs the bucket held anything of (a marker, a container's directory) when this writer
        first looked, listed once: a run not among them is uploaded without three requests more to look
        for an older copy and remove it (the common case: a backfill into a new prefix). One conversion
        at a time per bucket repo (see the README), so no other writer adds a run meanwhile."""
        if self._present_at_start is None:
            present = {hash_of_record(name) for name in self.bucket.glob(*RECORDS_DIR, '*')}
            for kind in CONTAINER_KINDS:
                present.update(self.bucket.glob(AIM_DIR, kind, 'chunks', '*'))
            self._present_at_start = present
        return self._present_at_start

    def _meta_records(self, written: WrittenRun):
        if written.meta_records is not None:
            return plain_records(unpack_records(written.meta_records))
        return self._container_records('meta', written.hash)  # a large run: read from its container

    def _container_records(self, kind: str, run_hash: str):
        container = RocksContainer(self._container_dir(kind, run_hash), read_only=True, skip_read_optimization=True)
        try:
            yield from plain_records(container.items())
        finally:
            container.close()

    def _container_files(self, run_hash: str) -> List[Tuple[str, Tuple[str, ...]]]:
        files = []
        for kind in CONTAINER_KINDS:
            local_dir = self._container_dir(kind, run_hash)
            for directory, _, names in os.walk(local_dir):
                relative = os.path.relpath(directory, local_dir)
                for name in sorted(n for n in names if not local_only(n)):
                    parts = () if relative == '.' else tuple(relative.split(os.sep))
                    files.append((os.path.join(directory, name), (AIM_DIR, kind, 'chunks', run_hash, *parts, name)))
        return files

    def _remove_local(self, run_hash: str) -> None:
        for kind in CONTAINER_KINDS:
            shutil.rmtree(self._container_dir(kind, run_hash), ignore_errors=True)
        try:
            os.unlink(os.path.join(self.scratch, f'{run_hash}.records'))
        except FileNotFoundError:
            pass
