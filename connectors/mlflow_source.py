"""Reading an MLflow tracking store (file store, SQL store or tracking server) through MLflow's client.

Everything goes through ``MlflowClient``, so every store MLflow supports works, and artifacts on S3/GCS/
a server's proxy come through MLflow's own artifact repositories. Listings follow every page token:
``search_experiments`` and ``search_runs`` return at most one page (1000 runs by default) per call, which
is how ``aim convert mlflow`` loses runs. ``MlflowClient.get_metric_history`` itself pages (25,000 points
a request against a tracking server) until the history ends.

``MlflowSource`` is what Beam pickles: it holds only the URI; each worker opens its own client.

Every client call (a listing page, a run, a metric history, an artifact listing or download) goes
through ``connectors.retry``; all of them are reads, safe to repeat. MLflow's own HTTP client would
retry one request for about 4 minutes (7 retries, backoff factor 2) before this layer even sees the
error, so the source lowers ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` to 2 (about 4.6 s) unless it is set.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from connectors import redact
from connectors.retry import call_with_retry

__all__ = ['MlflowSource', 'MlflowRunRecord', 'ExperimentRef', 'DatasetRecord', 'ModelRecord', 'SteppedImagePart',
           'normalize_tracking_uri', 'store_location_problem', 'select_experiments', 'artifact_kind',
           'stepped_image_part', 'run_datasets', 'IMAGE_EXTENSIONS', 'TEXT_EXTENSIONS', 'AUDIO_EXTENSIONS',
           'PAGE_SIZE', 'BULK_POINTS', 'SQL_IN_ITEMS']

PAGE_SIZE = 1000  # MLflow's own default and maximum-friendly page for search_runs/search_experiments
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024  # bigger files (model weights...) are listed as skipped, not downloaded

IMAGE_EXTENSIONS = frozenset({'jpg', 'bmp', 'jpeg', 'png', 'gif', 'svg'})
TEXT_EXTENSIONS = frozenset({'txt', 'log', 'py', 'js', 'yaml', 'yml', 'json', 'csv', 'tsv', 'md', 'rst', 'jsonnet'})
AUDIO_EXTENSIONS = frozenset({'flac', 'mp3', 'wav'})
# a SQL store's metric histories are read this many points a query at most (about 50 MB of Python tuples)
BULK_POINTS = 200_000
SQL_IN_ITEMS = 500  # values in one SQL ``IN (...)`` list at most (each a bound parameter; SQLite's limit can be 999)
MLFLOW_HTTP_RETRIES = '2'  # MLflow's own retries per HTTP request (its default, 7, is ~4 minutes a call)
T = TypeVar('T')
logger = logging.getLogger(__name__)


def artifact_kind(path: str) -> Optional[str]:
    """'image' | 'text' | 'audio' by file extension (case-insensitive), None for anything else."""
    ext = posixpath.splitext(path)[1].lower().lstrip('.')
    if ext in IMAGE_EXTENSIONS:
        return 'image'
    if ext in TEXT_EXTENSIONS:
        return 'text'
    if ext in AUDIO_EXTENSIONS:
        return 'audio'
    return None


# MLflow's log_image(key=..., step=...) layout (mlflow/tracking/client.py): one full image, one thumbnail
# beside it; '+' separates the fields since MLflow 3 ('%' before), '/' in a key is written '~' ('#' before).
_STEPPED_IMAGE = re.compile(r'images/(?P<key>[^/]+?)[+%]step[+%](?P<step>\d+)[+%]timestamp[+%](?P<timestamp>\d+)'
                            r'[+%](?P<uuid>[0-9A-Za-z-]+)(?P<part>[+%]compressed\.webp|\.png|\.json)')
_STEPPED_PARTS = {'.png': 'image', '.json': 'metadata'}


@dataclasses.dataclass(frozen=True)
class SteppedImagePart:
    """One file of an image MLflow logged at a step: the image itself, its thumbnail or its metadata."""
    key: str  # as the user gave it to log_image (slashes restored)
    step: int
    timestamp: int  # ms
    image_id: str  # the uuid MLflow gave this image (its files share it)
    part: str  # 'image' | 'thumbnail' | 'metadata'


def stepped_image_part(path: str) -> Optional[SteppedImagePart]:
    """What ``path`` is of a stepped image (``images/<key>+step+<n>+timestamp+<ms>+<uuid>.png`` and the
    ``+compressed.webp`` thumbnail beside it), None for any other artifact."""
    match = _STEPPED_IMAGE.fullmatch(path)
    if match is None:
        return None
    key = match.group('key').replace('~', '/').replace('#', '/')
    part = _STEPPED_PARTS.get(match.group('part'), 'thumbnail')
    return SteppedImagePart(key, int(match.group('step')), int(match.group('timestamp')), match.group('uuid'), part)


def _is_file_store(uri: str) -> bool:
    return uri.startswith('file:')


class EmptyHistory(ConnectionError):
    """A tracking server answered ``get_metric_history`` with no point for a key its ``get_run`` lists:
    seen when a connection was cut in that answer (tests/test_faults.py's proxy); taken as transient,
    so the call is retried, and named if it lasts."""


def normalize_tracking_uri(uri: str) -> str:
    """A plain local path (``./mlruns``) becomes an absolute ``file://`` URI and a relative SQLite path an
    absolute one, so that workers started elsewhere read the same store; other URIs are kept as given."""
    uri = uri.strip()
    if '://' not in uri:
        return 'file://' + os.path.abspath(uri)
    if uri.startswith('sqlite:///') and not uri.startswith('sqlite:////'):
        path = uri[len('sqlite:///'):]
        if path and path != ':memory:':
            return 'sqlite:///' + os.path.abspath(path)
    return uri


SQLITE_PREFIX = 'sqlite:///'
DATABASE_SUFFIXES = ('.db', '.sqlite', '.sqlite3')


def _sqlite_path(uri: str) -> Optional[str]:
    """The database file a ``sqlite:///`` URI names (its query string left out), None for other URIs and
    for an in-memory database."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    path = uri[len(SQLITE_PREFIX):].split('?', 1)[0]
    return path if path and path != ':memory:' else None


def _looks_like_database(path: str) -> bool:
    """A SQLite file by its suffix or, when it exists, by its header (any file is one MLflow could open)."""
    if path.lower().endswith(DATABASE_SUFFIXES):
        return True
    try:
        with open(path, 'rb') as stream:
            return stream.read(16) == b'SQLite format 3\x00'
    except OSError:
        return False


def store_location_problem(uri: str) -> Optional[str]:
    """Why a local store at ``uri`` cannot be what the user meant, or None. MLflow creates what it does not
    find: a SQLite URI with a typo in its path becomes a new, empty database, and a file-store path a new,
    empty ``mlruns`` directory, so a typo would convert nothing and succeed. A path to a database file
    given without a scheme would be opened as a file store ("Not a directory: …/.trash"). Checked before
    MLflow is asked anything; other URIs (servers, other databases) are left to MLflow."""
    given = uri.strip()
    normalized = normalize_tracking_uri(given)
    database = _sqlite_path(normalized)
    if database is not None:
        if os.path.isdir(database):
            return f'{given} names a directory, not a SQLite database file ({database})'
        if not os.path.isfile(database):
            return f'no SQLite database at {database} (from {given}); MLflow would create an empty one'
        return None
    if not _is_file_store(normalized):
        return None
    path = normalized[len('file://'):] if normalized.startswith('file://') else normalized[len('file:'):]
    if os.path.isfile(path):
        if _looks_like_database(path):
            return (f'{given} is a database file, not an MLflow file store: '
                    f'use --tracking-uri {SQLITE_PREFIX}{os.path.abspath(path)}')
        return f'{given} is a file, not an MLflow file store (a directory such as ./mlruns)'
    if not os.path.exists(path):
        if path.lower().endswith(DATABASE_SUFFIXES):
            return (f'no SQLite database at {os.path.abspath(path)}; a database is given as '
                    f'--tracking-uri {SQLITE_PREFIX}{os.path.abspath(path)}')
        return f'no MLflow file store at {path} (from {given}); MLflow would create an empty one'
    return None


@dataclasses.dataclass(frozen=True)
class ExperimentRef:
    experiment_id: str
    name: str


def select_experiments(experiments: Sequence[ExperimentRef], wanted: Sequence[str]
                       ) -> Tuple[List[ExperimentRef], List[str]]:
    """The experiments that ``--experiment`` values name (each an id or a name; all when none is given),
    in listing order without duplicates, and the values that matched nothing."""
    if not wanted:
        return list(experiments), []
    chosen, unknown = [], []
    for value in wanted:
        matches = [e for e in experiments if e.experiment_id == value] or [e for e in experiments if e.name == value]
        if not matches:
            unknown.append(value)
        chosen.extend(matches)
    seen, ordered = set(), []
    for experiment in experiments:
        if experiment in chosen and experiment.experiment_id not in seen:
            seen.add(experiment.experiment_id)
            ordered.append(experiment)
    return ordered, unknown


@dataclasses.dataclass
class DatasetRecord:
    """One dataset a run logged with ``log_input``, as MLflow keeps it (schema, source and profile are the
    JSON texts MLflow stores)."""
    name: str
    digest: str
    source_type: str
    source: str
    schema: Optional[str]
    profile: Optional[str]
    context: Optional[str]  # the input's 'mlflow.data.context' tag: training, validation, ...
    tags: Dict[str, str]


@dataclasses.dataclass
class ModelRecord:
    """One model a run logged (MLflow 3's ``LoggedModel``): kept outside the run's artifacts."""
    model_id: str
    name: str
    flavors: List[str]  # from its MLmodel file (python_function left out); [] when it has none
    model_type: Optional[str]
    status: str
    step: int  # the run's step the model was logged at
    artifact_location: str
    params: Dict[str, str]
    metrics: Dict[str, float]  # the model's latest value per metric key
    tags: Dict[str, str]


@dataclasses.dataclass
class MlflowRunRecord:
    """One MLflow run as read: plain values only (times in MLflow's milliseconds)."""
    run_id: str
    experiment_id: str
    run_name: str
    status: str
    start_time: Optional[int]
    end_time: Optional[int]
    params: Dict[str, str]
    tags: Dict[str, str]
    # metric key -> [(step, value, timestamp ms)] in the order MLflow returns the history
    metrics: Dict[str, List[Tuple[int, float, int]]]
    # (artifact path, kind, bytes) for images, texts and audio
    artifacts: List[Tuple[str, str, bytes]]
    # (artifact path, why it was not read)
    skipped_artifacts: List[Tuple[str, str]]
    lifecycle_stage: str = 'active'  # 'deleted': deleted in MLflow, read because --include-deleted asked
    # thumbnails and metadata of stepped images: parts of the images in ``artifacts``, not downloaded
    image_companions: List[str] = dataclasses.field(default_factory=list)
    datasets: List[DatasetRecord] = dataclasses.field(default_factory=list)
    models: List[ModelRecord] = dataclasses.field(default_factory=list)


class MlflowSource:
    def __init__(self, tracking_uri: str, page_size: int = PAGE_SIZE, max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
                 bulk_points: int = BULK_POINTS):
        self.tracking_uri = normalize_tracking_uri(tracking_uri)
        self.page_size = page_size
        self.max_artifact_bytes = max_artifact_bytes
        self.bulk_points = bulk_points
        self._client = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_client'] = None
        return state

    @property
    def client(self):
        if self._client is None:
            if _is_file_store(self.tracking_uri):
                # MLflow 3 refuses to open a file store unless this is set; reading one is exactly what a
                # migration away from it needs.
                os.environ.setdefault('MLFLOW_ALLOW_FILE_STORE', 'true')
            os.environ.setdefault('MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR', 'false')  # one bar per file, on workers
            os.environ.setdefault('MLFLOW_HTTP_REQUEST_MAX_RETRIES', MLFLOW_HTTP_RETRIES)
            from mlflow import MlflowClient
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One client call, retried on transient errors; when they last, the error names the tracking
        URI and the call (``MLflow http://host:5000 get_run 3f2a…``)."""
        return call_with_retry(fn, *args, resource=f'MLflow {self.tracking_uri} {what}', **kwargs)

    def experiments(self) -> List[ExperimentRef]:
        """Every active experiment, page by page."""
        refs, token = [], None
        while True:
            page = self._call('search_experiments', self.client.search_experiments, max_results=self.page_size,
                              page_token=token)
            refs.extend(ExperimentRef(str(e.experiment_id), e.name) for e in page)
            token = page.token
            if not token:
                return refs

    def runs(self, experiment_ids: Sequence[str], include_deleted: bool = False, deleted_only: bool = False,
             order_by: Optional[List[str]] = None) -> Iterator[Tuple[str, Any]]:
        """(experiment id, MLflow ``Run`` as listed: info, params, tags, latest metrics) of the experiments'
        active runs (with ``include_deleted`` also the deleted ones; with ``deleted_only`` only those),
        page by page."""
        from mlflow.entities import ViewType

        view = ViewType.DELETED_ONLY if deleted_only else ViewType.ALL if include_deleted else ViewType.ACTIVE_ONLY
        for experiment_id in experiment_ids:
            token = None
            while True:
                page = self._call(f'search_runs {experiment_id}', self.client.search_runs, [experiment_id],
                                  run_view_type=view, max_results=self.page_size, page_token=token,
                                  order_by=order_by)
                for run in page:
                    yield experiment_id, run
                token = page.token
                if not token:
                    break

    def run_ids(self, experiment_ids: Sequence[str], include_deleted: bool = False) -> Iterator[Tuple[str, str]]:
        """(experiment id, run id) of every active run of the experiments (and deleted ones with
        ``include_deleted``), experiment by experiment, oldest first (then by run id, as MLflow orders
        equal start times); from a SQL store in one query (``_sql_run_ids``), else page by page."""
        store = self._sql_store()
        if store is not None:
            stages = ['active', 'deleted'] if include_deleted else ['active']
            yield from self._sql_run_ids(store, experiment_ids, stages)
            return
        for experiment_id, run in self.runs(experiment_ids, include_deleted, order_by=['attributes.start_time ASC']):
            yield experiment_id, run.info.run_id

    def deleted_run_ids(self, experiment_ids: Sequence[str]) -> Iterator[Tuple[str, str]]:
        """(experiment id, run id) of every deleted run of the experiments (MLflow keeps a deleted run
        until ``mlflow gc``; listings leave it out unless asked), in ``run_ids``' order."""
        store = self._sql_store()
        if store is not None:
            yield from self._sql_run_ids(store, experiment_ids, ['deleted'])
            return
        for experiment_id, run in self.runs(experiment_ids, deleted_only=True):
            yield experiment_id, run.info.run_id

    def _sql_run_ids(self, store, experiment_ids: Sequence[str], stages: List[str]) -> Iterator[Tuple[str, str]]:
        """``run_ids`` from a SQL store: the ids alone, from MLflow's ``runs`` table (one query per
        ``SQL_IN_ITEMS`` experiments), ordered as ``search_runs(order_by=['attributes.start_time ASC'])``
        orders them (runs without a start time last, then by run id). ``search_runs`` builds every run
        whole (params, tags, latest metrics, inputs, outputs) to list it: ~1 s of the launcher's CPU for
        1,052 runs, before any worker starts (benchmarks/RESULTS.md, 2026-11-30). The experiment ids are
        those ``experiments`` listed (in a workspace-aware store, the active workspace's)."""
        from mlflow.store.tracking.dbmodels.models import SqlRun

        wanted = [int(experiment_id) for experiment_id in experiment_ids]

        def query(chunk: List[int]):
            with store.ManagedSessionMaker() as session:
                return session.query(SqlRun.experiment_id, SqlRun.run_uuid) \
                    .filter(SqlRun.experiment_id.in_(chunk), SqlRun.lifecycle_stage.in_(stages)) \
                    .order_by(SqlRun.start_time.is_(None), SqlRun.start_time, SqlRun.run_uuid).all()

        by_experiment: Dict[int, List[str]] = {experiment_id: [] for experiment_id in wanted}
        for start in range(0, len(wanted), SQL_IN_ITEMS):
            chunk = wanted[start:start + SQL_IN_ITEMS]
            for experiment_id, run_id in self._call(f'list runs of {len(chunk)} experiments', query, chunk):
                by_experiment[int(experiment_id)].append(run_id)
        for experiment_id, number in zip(experiment_ids, wanted):
            for run_id in by_experiment.pop(number, []):
                yield experiment_id, run_id

    def fetch_run(self, run_id: str) -> MlflowRunRecord:
        """One run through the client, call by call: ``get_run``, one ``get_metric_history`` per metric
        key, its artifacts and its models. Works against every store."""
        client = self.client
        run = self._call(f'get_run {run_id}', client.get_run, run_id)

        def history(key: str):
            points = client.get_metric_history(run_id, key)
            if not points:  # get_run lists the key, so it holds a point: an answer cut short (retried)
                raise EmptyHistory(f'get_metric_history returned no point of {key!r}, which get_run lists')
            return points

        metrics = {key: [(int(m.step), float(m.value), int(m.timestamp))
                         for m in self._call(f'get_metric_history {run_id} {key}', history, key)]
                   for key in sorted(run.data.metrics)}
        return self._record(run, metrics)

    def reads_in_bulk(self) -> bool:
        """Whether ``fetch_runs`` reads many runs at a time: for SQL stores (SQLite, PostgreSQL, MySQL...)
        read in this process through MLflow's SQLAlchemy store. File stores and tracking servers are read
        run by run (``fetch_run``): a file store's ``search_runs`` reads every run of the experiment."""
        return self._sql_store() is not None

    def _sql_store(self):
        """MLflow's ``SqlAlchemyStore`` behind the client, or None for any other store. MLflow's client
        exposes its store only privately (``MlflowClient._tracking_client.store``); anything unexpected
        there means "not a SQL store", and the run-by-run path is taken."""
        try:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        except ImportError:  # mlflow-skinny: no SQLAlchemy store
            return None
        store = getattr(getattr(self.client, '_tracking_client', None), 'store', None)
        return store if isinstance(store, SqlAlchemyStore) else None

    def fetch_runs(self, run_ids: Sequence[str], experiment_ids: Sequence[str]
                   ) -> Iterator[Tuple[str, Union[MlflowRunRecord, Exception]]]:
        """(run id, its record, or the error that kept it from being read) for each of ``run_ids`` (runs
        of ``experiment_ids``), in order. From a SQL store (``reads_in_bulk``) the runs come from one
        ``search_runs`` (params, tags, datasets, models' ids) and their metric histories from one query
        of MLflow's ``metrics`` table per group of runs holding at most ``bulk_points`` points (a bigger
        run alone; one group's histories are held at a time), instead of a ``get_run`` and one
        ``get_metric_history`` per key for each run (nine tenths of a small run's MLflow time).
        Artifacts and models are then read run by run as ``fetch_run`` reads them. Any other store, or
        runs whose bulk read fails, are read run by run."""
        store = self._sql_store() if len(run_ids) > 1 else None
        if store is None:
            yield from self._one_by_one(run_ids)
            return
        try:
            listed = self._listed_runs(run_ids, experiment_ids)
            points = self._metric_counts(store, [run_id for run_id in run_ids if run_id in listed])
        except Exception as error:  # noqa: BLE001 (each run is tried again on its own)
            self._warn_bulk_failed(run_ids, error)
            yield from self._one_by_one(run_ids)
            return
        for group in _groups_by_points(run_ids, points, self.bulk_points):
            try:
                histories = self._histories(store, [run_id for run_id in group if points.get(run_id)])
            except Exception as error:  # noqa: BLE001 (each run is tried again on its own)
                self._warn_bulk_failed(group, error)
                yield from self._one_by_one(group)
                continue
            for run_id in group:
                if run_id not in listed:
                    yield run_id, LookupError(f'run {run_id} is no longer in the store (deleted for good since '
                                              f'it was listed)')
                    continue
                try:
                    yield run_id, self._record(listed[run_id], histories.pop(run_id, {}))
                except Exception as error:  # noqa: BLE001 (the caller makes it a dead letter)
                    yield run_id, error

    def _one_by_one(self, run_ids: Sequence[str]) -> Iterator[Tuple[str, Union[MlflowRunRecord, Exception]]]:
        for run_id in run_ids:
            try:
                yield run_id, self.fetch_run(run_id)
            except Exception as error:  # noqa: BLE001 (the caller makes it a dead letter)
                yield run_id, error

    def _warn_bulk_failed(self, run_ids: Sequence[str], error: Exception) -> None:
        logger.warning('reading %d runs at a time from %s failed (%s); reading them one by one', len(run_ids),
                       redact.mask_uri(self.tracking_uri), redact.mask_text(_first_line(error)))

    def _listed_runs(self, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> Dict[str, Any]:
        """Run id → MLflow ``Run`` (info, params, tags, latest metrics, inputs, outputs), as one
        ``search_runs`` lists them, deleted runs included (as ``get_run`` returns them)."""
        from mlflow.entities import ViewType

        quoted = ', '.join("'" + run_id.replace("'", "''") + "'" for run_id in run_ids)
        page = self._call(f'search_runs {len(run_ids)} runs', self.client.search_runs, list(experiment_ids),
                          filter_string=f'attributes.run_id IN ({quoted})', run_view_type=ViewType.ALL,
                          max_results=len(run_ids))
        return {run.info.run_id: run for run in page}

    def _metric_counts(self, store, run_ids: Sequence[str]) -> Dict[str, int]:
        """Run id → how many points MLflow's ``metrics`` table holds for it (runs without points left out)."""
        from sqlalchemy import func

        from mlflow.store.tracking.dbmodels.models import SqlMetric

        def count():
            with store.ManagedSessionMaker() as session:
                return dict(session.query(SqlMetric.run_uuid, func.count())
                            .filter(SqlMetric.run_uuid.in_(list(run_ids))).group_by(SqlMetric.run_uuid).all())

        return self._call(f'count metrics of {len(run_ids)} runs', count) if run_ids else {}

    def _histories(self, store, run_ids: Sequence[str]) -> Dict[str, Dict[str, List[Tuple[int, float, int]]]]:
        """Run id → metric key → history, as ``get_metric_history`` returns it (ordered by timestamp,
        step, value; NaN where MLflow flagged it; ±inf as MLflow stored it, the largest finite double),
        in one query of MLflow's ``metrics`` table."""
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        def query():
            with store.ManagedSessionMaker() as session:
                return session.query(SqlMetric.run_uuid, SqlMetric.key, SqlMetric.step, SqlMetric.value,
                                     SqlMetric.timestamp, SqlMetric.is_nan) \
                    .filter(SqlMetric.run_uuid.in_(list(run_ids))) \
                    .order_by(SqlMetric.run_uuid, SqlMetric.key, SqlMetric.timestamp, SqlMetric.step,
                              SqlMetric.value, SqlMetric.is_nan).all()

        out: Dict[str, Dict[str, List[Tuple[int, float, int]]]] = {}
        if not run_ids:
            return out
        for run_uuid, key, step, value, timestamp, is_nan in self._call(
                f'metric histories of {len(run_ids)} runs', query):
            out.setdefault(run_uuid, {}).setdefault(key, []).append(
                (int(step), float('nan') if is_nan else float(value), int(timestamp)))
        return out

    def _record(self, run, metrics: Dict[str, List[Tuple[int, float, int]]]) -> MlflowRunRecord:
        """A run's record from its MLflow ``Run`` and metric histories; its artifacts and models are read
        here."""
        info, data = run.info, run.data
        missing = sorted(key for key in data.metrics if not metrics.get(key))
        if missing:  # the store lists a latest value of these keys and holds no point of their history
            raise LookupError(f'run {info.run_id}: MLflow lists metric(s) {", ".join(map(repr, missing))} but '
                              f'returned no point of their history; the run is not converted without them')
        artifacts, skipped, companions = self._read_artifacts(info.run_id, info.artifact_uri)
        return MlflowRunRecord(
            run_id=info.run_id, experiment_id=str(info.experiment_id), run_name=info.run_name or info.run_id,
            status=info.status, start_time=info.start_time, end_time=info.end_time,
            params=dict(data.params), tags=dict(data.tags), metrics=dict(sorted(metrics.items())),
            lifecycle_stage=info.lifecycle_stage,
            artifacts=artifacts, skipped_artifacts=skipped, image_companions=companions,
            datasets=run_datasets(run), models=self._models(run))

    def artifact_repository(self, artifact_uri: str):
        """MLflow's artifact repository for a run's ``artifact_uri`` (local, S3, GCS, a server's proxy),
        made as ``MlflowClient`` makes it. Asking it directly spares the ``get_run`` that the client's
        ``list_artifacts`` makes on every call (one per directory) to learn the URI the caller has."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

        uri = add_databricks_profile_info_to_artifact_uri(artifact_uri, self.tracking_uri)
        return get_artifact_repository(uri, tracking_uri=self.tracking_uri)

    def list_artifacts(self, run_id: str, artifact_uri: Optional[str] = None) -> List[Tuple[str, Optional[int]]]:
        """(path, size) of every artifact file of a run, walking directories recursively; through the
        run's artifact repository when its ``artifact_uri`` is given, else through the client."""
        repository = self.artifact_repository(artifact_uri) if artifact_uri else None
        files, pending = [], [None]
        while pending:
            directory = pending.pop()
            if repository is not None:
                listing = self._call(f'list_artifacts {run_id}/{directory or ""}', repository.list_artifacts,
                                     directory)
            else:
                listing = self._call(f'list_artifacts {run_id}/{directory or ""}', self.client.list_artifacts,
                                     run_id, directory)
            for info in listing:
                if info.is_dir:
                    pending.append(info.path)
                else:
                    files.append((info.path, info.file_size))
        return sorted(files)

    def _read_artifacts(self, run_id: str, artifact_uri: str
                        ) -> Tuple[List[Tuple[str, str, bytes]], List[Tuple[str, str]], List[str]]:
        """Only convertible artifacts are downloaded, one at a time, into a temporary directory that is
        removed before returning (whatever happens). Returns (read, skipped, thumbnails and metadata of
        stepped images: not downloaded, the full image is what Aim holds)."""
        read, skipped, companions = [], [], []
        listing = self.list_artifacts(run_id, artifact_uri)
        if not listing:
            return read, skipped, companions
        repository = self.artifact_repository(artifact_uri)
        workdir = tempfile.mkdtemp(prefix='runferry-mlflow-')
        try:
            for path, size in listing:
                stepped = stepped_image_part(path)
                if stepped is not None and stepped.part != 'image':
                    companions.append(path)
                    continue
                kind = artifact_kind(path)
                if kind is None:
                    skipped.append((path, 'artifact type has no Aim object (not an image, text or audio file)'))
                    continue
                if size is not None and size > self.max_artifact_bytes:
                    skipped.append((path, f'artifact larger than {self.max_artifact_bytes} bytes ({size})'))
                    continue
                local = self._call(f'download_artifacts {run_id}/{path}', repository.download_artifacts, path,
                                   dst_path=workdir)
                with open(local, 'rb') as stream:
                    read.append((path, kind, stream.read()))
                os.remove(local)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        orphans = _orphan_image_parts(companions, [path for path, _ in listing])
        skipped += [(path, 'thumbnail or metadata of a stepped image whose full image is not in the run')
                    for path in orphans]
        return read, skipped, [path for path in companions if path not in orphans]

    def _models(self, run) -> List[ModelRecord]:
        """The models a run logged (its ``outputs``, MLflow 3): one ``get_logged_model`` and one MLmodel
        read each; none for a run without (MLflow 2 stores have no outputs)."""
        outputs = getattr(run, 'outputs', None)
        models = []
        for output in (getattr(outputs, 'model_outputs', None) or []):
            model = self._call(f'get_logged_model {output.model_id}', self.client.get_logged_model, output.model_id)
            latest: Dict[str, Tuple[int, float]] = {}
            for metric in model.metrics or []:
                if metric.key not in latest or metric.timestamp >= latest[metric.key][0]:
                    latest[metric.key] = (metric.timestamp, float(metric.value))
            models.append(ModelRecord(
                model_id=model.model_id, name=model.name, flavors=self._flavors(model.artifact_location),
                model_type=model.model_type, status=str(getattr(model.status, 'name', model.status)),
                step=int(output.step or 0), artifact_location=model.artifact_location,
                params=dict(sorted((model.params or {}).items())),
                metrics={key: value for key, (_, value) in sorted(latest.items())},
                tags=dict(sorted((model.tags or {}).items()))))
        return models

    def _flavors(self, artifact_location: str) -> List[str]:
        """The flavors (sklearn, pytorch, ...) a model's MLmodel file names; [] when it has none (a model
        still being logged, or one without files)."""
        import yaml
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        workdir = tempfile.mkdtemp(prefix='runferry-mlflow-')
        try:
            local = self._call(f'download {artifact_location}/MLmodel', download_artifacts,
                               artifact_uri=f'{artifact_location}/MLmodel', dst_path=workdir,
                               tracking_uri=self.tracking_uri)
            with open(local) as stream:
                flavors = (yaml.safe_load(stream) or {}).get('flavors') or {}
        except (MlflowException, OSError, yaml.YAMLError):
            return []
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return sorted(name for name in flavors if name != 'python_function') or sorted(flavors)


def _groups_by_points(run_ids: Sequence[str], points: Dict[str, int], limit: int) -> Iterator[List[str]]:
    """``run_ids`` in order, cut into groups of at most ``limit`` points (``points``: run id → its count,
    none for a run without points); a run of more points than ``limit`` is a group alone."""
    group: List[str] = []
    held = 0
    for run_id in run_ids:
        if group and held + points.get(run_id, 0) > limit:
            yield group
            group, held = [], 0
        group.append(run_id)
        held += points.get(run_id, 0)
    if group:
        yield group


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _orphan_image_parts(companions: List[str], paths: List[str]) -> List[str]:
    """The thumbnails and metadata files among ``companions`` whose full image is not among ``paths``."""
    images = set()
    for path in paths:
        part = stepped_image_part(path)
        if part is not None and part.part == 'image':
            images.add((part.key, part.image_id))
    parts = {path: stepped_image_part(path) for path in companions}
    return [path for path, part in parts.items() if (part.key, part.image_id) not in images]


def run_datasets(run) -> List[DatasetRecord]:
    """The datasets a run logged with ``log_input``, as ``get_run`` returns them."""
    inputs = getattr(run, 'inputs', None)
    datasets = []
    for dataset_input in (getattr(inputs, 'dataset_inputs', None) or []):
        dataset = dataset_input.dataset
        tags = {tag.key: tag.value for tag in dataset_input.tags or []}
        datasets.append(DatasetRecord(
            name=dataset.name, digest=dataset.digest, source_type=dataset.source_type, source=dataset.source,
            schema=dataset.schema, profile=dataset.profile, context=tags.pop('mlflow.data.context', None),
            tags=dict(sorted(tags.items()))))
    return datasets
