"""The Aim destination's transform for a repo on object storage: ``WriteToAimBucket``.

    runs ─WriteRuns─▶ one small dict per run uploaded (its marker's name) ─CollectMarkers─▶ one list
         ─IndexRuns─▶ the repo's SQLite rows and index, built from the markers and uploaded, once
                         └─CountContexts─▶ the ``contexts_written`` counter
    dead letters of the writes ─▶ ``skipped``

``WriteBucketRunsFn`` is ``transforms.aim_write.WriteRunsFn`` with ``connectors.aim_bucket_runs.BucketRunWriter``
(each run written locally, uploaded whole, marker last); its output holds names, not records: the index
step reads each run's records from its marker file in the bucket, so memory does not grow with the runs.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.aim_write import CountContextsFn, WriteRunsFn
from transforms.counters import NAMESPACE, SKIPPED

__all__ = ['WriteToAimBucket', 'WriteBucketRunsFn', 'IndexBucketRunsFn']


class WriteBucketRunsFn(WriteRunsFn):
    """Runs → one dict per run uploaded (name, hash, points, contexts, ``record``: its marker's name).
    Counts ``runs_unchanged``: runs the bucket already held, equal (nothing uploaded)."""

    def __init__(self, repo: str, storage_options: Optional[Dict[str, Any]] = None, progress=None):
        super().__init__(repo, progress)
        self.storage_options = dict(storage_options or {})
        self.runs_unchanged = Metrics.counter(NAMESPACE, 'runs_unchanged')

    def _new_writer(self):
        from connectors.aim_bucket import BucketRepo
        from connectors.aim_bucket_runs import BucketRunWriter

        return BucketRunWriter(BucketRepo(self.repo, self.storage_options))

    def teardown(self):
        try:
            super().teardown()
        finally:
            if self._writer is not None:
                self._writer.close()

    def _index_inputs(self, result) -> Dict[str, Any]:
        if not result.uploaded:
            self.runs_unchanged.inc()
        return {'record': result.record}


class IndexBucketRunsFn(beam.DoFn):
    """All uploaded runs (one list of small dicts) → the bucket repo's rows and index updated, once, from
    one worker (``connectors.aim_bucket_index.index_bucket_runs``). Counts ``runs_indexed``."""

    def __init__(self, repo: str, storage_options: Optional[Dict[str, Any]] = None):
        self.repo = repo
        self.storage_options = dict(storage_options or {})
        self.runs_indexed = Metrics.counter(NAMESPACE, 'runs_indexed')

    def process(self, results: List[Dict[str, Any]]):
        from connectors.aim_bucket import BucketRepo
        from connectors.aim_bucket_index import index_bucket_runs

        indexed = index_bucket_runs(BucketRepo(self.repo, self.storage_options), [r['record'] for r in results])
        self.runs_indexed.inc(indexed)
        yield indexed


class WriteToAimBucket(beam.PTransform):
    """Runs (``RunData``, or ``(RunData, dead letters)``) → written into the Aim repo on object storage
    ``repo`` and indexed. Outputs ``written`` and ``skipped``, as ``transforms.aim_write.WriteToAim``."""

    def __init__(self, repo: str, storage_options: Optional[Dict[str, Any]] = None, progress=None):
        super().__init__()
        self.repo = repo
        self.storage_options = dict(storage_options or {})
        self.progress = progress

    def expand(self, runs: beam.PCollection) -> Dict[str, beam.PCollection]:
        written = runs | 'WriteRuns' >> beam.ParDo(
            WriteBucketRunsFn(self.repo, self.storage_options, self.progress)).with_outputs(SKIPPED, main='written')
        written.written | 'CountContexts' >> beam.ParDo(CountContextsFn())
        (written.written
         | 'CollectMarkers' >> beam.combiners.ToList()
         | 'IndexRuns' >> beam.ParDo(IndexBucketRunsFn(self.repo, self.storage_options)))
        return {'written': written.written, 'skipped': written[SKIPPED]}
