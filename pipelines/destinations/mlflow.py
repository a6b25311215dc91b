"""The MLflow destination: runs written into any MLflow tracking store (``--tracking-uri``).

It owns what only MLflow needs: the ``--tracking-uri`` flag (masked wherever it is shown), the check
before any work that the store can be reached (a SQLite path that cannot be a database is refused
first), the write (``transforms.mlflow_write.WriteToMlflow``) and its report lines (MLflow has no
histogram type; keys renamed; params moved; points a re-run found already there).
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional

import apache_beam as beam

from connectors.mlflow_source import DATABASE_SUFFIXES, SQLITE_PREFIX, normalize_tracking_uri
from connectors.redact import mask_uri, remember, secrets_of_uri
from connectors.retry import call_with_retry, one_line
from connectors.sql_store import unreachable_database
from pipelines.common import UsageError
from pipelines.seam import Destination
from transforms.mlflow_write import WriteToMlflow

__all__ = ['MlflowDestination', 'destination_store_problem']


def destination_store_problem(uri: str) -> Optional[str]:
    """Why the local store at ``uri`` cannot be written, or None. A new SQLite database is fine (MLflow
    creates it), but its directory must exist (a typo there would fail deep in a worker), the path must
    not be a directory or a file that is not a SQLite database, and a database file given without a
    scheme would be opened as a file store. Other URIs are left to the reachability check."""
    given = uri.strip()
    if not given:
        return '--tracking-uri is empty'
    normalized = normalize_tracking_uri(given)
    if normalized.startswith(SQLITE_PREFIX):
        path = normalized[len(SQLITE_PREFIX):].split('?', 1)[0]
        if not path or path == ':memory:':
            return f'{given} is an in-memory database: nothing would be kept'
        if os.path.isdir(path):
            return f'{given} names a directory, not a SQLite database file ({path})'
        if not os.path.isdir(os.path.dirname(path) or '.'):
            return f'no directory {os.path.dirname(path)} for the SQLite database {path} (from {given})'
        if os.path.isfile(path) and os.path.getsize(path):
            with open(path, 'rb') as stream:
                if stream.read(16) != b'SQLite format 3\x00':
                    return f'{path} is not a SQLite database (from {given})'
        return None
    if '://' not in given and given.lower().endswith(DATABASE_SUFFIXES):
        return (f'{given} looks like a database file, not an MLflow file store: use --tracking-uri '
                f'{SQLITE_PREFIX}{os.path.abspath(given)}')
    return None


class MlflowDestination(Destination):
    """An MLflow tracking store (``--tracking-uri``): file, SQLite, PostgreSQL/MySQL or an ``mlflow server``."""

    def __init__(self, tracking_uri: str, artifact_location: Optional[str] = None):
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--tracking-uri', '--tracking_uri', dest='tracking_uri', required=True,
                            help='MLflow tracking store: sqlite:///PATH, postgresql://…, http(s)://SERVER, '
                                 'or a file-store directory')
        parser.add_argument('--artifact-location', '--artifact_location', dest='artifact_location',
                            help="artifact root of an experiment this creates (default: the store's; for a "
                                 "SQL store without a server, ./mlruns)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> 'MlflowDestination':
        remember(secrets_of_uri(args.tracking_uri))
        problem = destination_store_problem(args.tracking_uri)
        if problem is not None:
            raise UsageError(f'--tracking-uri: {problem}')
        return cls(normalize_tracking_uri(args.tracking_uri), args.artifact_location)

    def check(self, early: Any = None) -> None:
        """The store answers (a new SQLite database is created with MLflow's tables here, once, not by
        racing workers): one search, retried on transient errors, else one line naming the store."""
        from connectors.mlflow_sink import MlflowRunWriter

        problem = unreachable_database(self.tracking_uri)  # before MLflow's own ~100 s engine retry loop
        if problem is not None:
            raise UsageError(f'--tracking-uri: {problem}')
        writer = MlflowRunWriter(self.tracking_uri, self.artifact_location)
        try:
            call_with_retry(writer.client.search_experiments, max_results=1, resource=self.describe())
        except Exception as error:
            raise UsageError(f'--tracking-uri {mask_uri(self.tracking_uri)} cannot be used: {one_line(error)}') from None

    def describe(self) -> str:
        return f'MLflow {mask_uri(self.tracking_uri)}'

    def default_skipped_path(self) -> str:
        return os.path.abspath('runferry-skipped.jsonl')

    def write(self, progress=None) -> beam.PTransform:
        return WriteToMlflow(self.tracking_uri, self.artifact_location, progress)

    def report_lines(self, counters: Dict[str, int]) -> List[str]:
        lines = []
        if counters.get('points_written:distribution'):
            lines.append(f'  {counters["points_written:distribution"]:,} histogram point(s) written as JSON '
                         f'artifacts histograms/<key>.json: MLflow has no histogram type')
        if counters.get('points_present'):
            lines.append(f'  {counters["points_present"]:,} of the points written were already in MLflow (an earlier '
                         f'conversion): not sent again')
        if counters.get('keys_renamed'):
            lines.append(f'  {counters["keys_renamed"]:,} key(s) renamed for MLflow (refused characters → _): '
                         f'each run lists its own in the tag runferry.renamed_keys')
        if counters.get('params_moved'):
            lines.append(f'  {counters["params_moved"]:,} param value(s) longer than MLflow keeps: written as the '
                         f'tag runferry.param.<name> or the artifact params/<name>.txt')
        if counters.get('runs_written'):
            lines.append(f'View the result: mlflow ui --backend-store-uri {mask_uri(self.tracking_uri)}'
                         if not self.tracking_uri.startswith(('http://', 'https://'))
                         else f'View the result: {mask_uri(self.tracking_uri)}')
        return lines

    def report_fields(self) -> Dict[str, Any]:
        return {'tracking_uri': mask_uri(self.tracking_uri)}
