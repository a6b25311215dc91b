"""A run's RocksDB container (``meta/chunks/<hash>``, ``seqs/chunks/<hash>``) opened for the storage
path's writes at a small run's cost: what it holds and the files it leaves are Aim's, only the work of
opening, writing and closing it is less.

Why: for a small run (a few series of 30 points, as most MLflow runs), opening and closing its two
containers with Aim's options cost ~28 ms of CPU a run, ~90% of the run's cost (benchmarks/RESULTS.md,
"Per-run cost of the Aim write"; ``python -m benchmarks.run_open_cost``). Where it went (perf, strace):

* ``manifest_preallocation_size``: RocksDB preallocates 4 MB (its default) for a new MANIFEST with
  ``fallocate``, and truncates it back at close (on tmpfs: pages allocated, zeroed and freed again), twice
  a run, about half of a bare database's creation. The MANIFEST of a run's container holds a few hundred
  bytes; 64 KB covers it (a larger one just grows as any file does).
* the write-ahead log: each write batch also went to the WAL, which RocksDB preallocates (1.1 MB:
  ``write_buffer_size`` + 10%) at the first write and truncates at close. The storage path's
  batches skip it (``commit``): they reach the database through the memtable, which
  the close flushes into a table file (Aim's ``RocksContainer.close``: ``flush``, then ``flush_wal``), as
  a full memtable is flushed on the way. The trade-off: what a run wrote before its close lives in memory
  only, so a process killed mid-run loses that run's records (with the WAL they survived, as a run half
  written). Either way the run is not in the index yet and a re-run rewrites it whole from its source
  (tests/test_kill_rerun.py); a closed run is in table files, as before. A full disk still fails the
  close's flush at once (``connectors.disk_guard``; tests/test_full_disk.py).

Measured for a run of 4 series x 30 points on /dev/shm (median of 3, CPU ms a run): open 22.2 -> 11.7
with the MANIFEST's, close 7.7 -> 5.2, then write 3.0 -> 2.4 and close 5.2 -> 3.9 without the WAL;
``AimRunWriter.write`` 31.3 -> 18.2. What is left is RocksDB's own (writing and re-reading the OPTIONS
file, the MANIFEST, 16 thread starts a database, the flush) and not reachable through aimrocks' options
(it has no ``allow_fallocate``, ``info_log_level`` or shared ``Env``). On ext4 neither option showed a gain
above the noise: there fallocate is cheap, and creating the database's files and their fsyncs dominate;
``connectors.aim_staging`` takes those off the disk (a new run is built on tmpfs and published whole).
"""
from __future__ import annotations

from aim.storage.rockscontainer import RocksContainer

__all__ = ['RunContainer', 'WRITE_OPTIONS']

# RocksDB options set on top of Aim's (``RocksContainer._db_opts``) when a run's container is opened for
# writing; none changes what the database holds
WRITE_OPTIONS = dict(
    manifest_preallocation_size=64 * 1024,
)


class RunContainer(RocksContainer):
    """Aim's ``RocksContainer`` with ``WRITE_OPTIONS`` when it opens its database for writing."""

    @property
    def db(self):
        if self._resources._db is None and not self.read_only:
            self._db_opts.update(WRITE_OPTIONS)
        # looked up at each call: connectors.disk_guard wraps RocksContainer.db
        return RocksContainer.db.fget(self)

    def commit(self, batch) -> None:
        """Aim's ``commit`` with the write-ahead log off: the close flushes the memtable (see the module)."""
        self.db.write(batch, disable_wal=True)
