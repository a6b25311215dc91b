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
import os
import posixpath
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

from connectors.retry import call_with_retry

__all__ = ['MlflowSource', 'MlflowRunRecord', 'ExperimentRef', 'DatasetRecord', 'ModelRecord', 'SteppedImagePart',
           'normalize_tracking_uri', 'store_location_problem', 'select_experiments', 'artifact_kind',
           'stepped_image_part', 'run_datasets', 'IMAGE_EXTENSIONS', 'TEXT_EXTENSIONS', 'AUDIO_EXTENSIONS',
           'PAGE_SIZE']

PAGE_SIZE = 1000  # MLflow's own default and maximum-friendly page for search_runs/search_experiments
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024  # bigger files (model weights...) are listed as skipped, not downloaded

IMAGE_EXTENSIONS = frozenset({'jpg', 'bmp', 'jpeg', 'png', 'gif', 'svg'})
TEXT_EXTENSIONS = frozenset({'txt', 'log', 'py', 'js', 'yaml', 'yml', 'json', 'csv', 'tsv', 'md', 'rst', 'jsonnet'})
AUDIO_EXTENSIONS = frozenset({'flac', 'mp3', 'wav'})
MLFLOW_HTTP_RETRIES = '2'  # MLflow's own retries per HTTP request (its default, 7, is ~4 minutes a call)
T = TypeVar('T')


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
    def __init__(self, tracking_uri: str, page_size: int = PAGE_SIZE, max_artifact_bytes: int = MAX_ARTIFACT_BYTES):
        self.tracking_uri = normalize_tracking_uri(tracking_uri)
        self.page_size = page_size
        self.max_artifact_bytes = max_artifact_bytes
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
        ``include_deleted``), page by page, oldest first."""
        for experiment_id, run in self.runs(experiment_ids, include_deleted, order_by=['attributes.start_time ASC']):
            yield experiment_id, run.info.run_id

    def deleted_run_ids(self, experiment_ids: Sequence[str]) -> Iterator[Tuple[str, str]]:
        """(experiment id, run id) of every deleted run of the experiments (MLflow keeps a deleted run
        until ``mlflow gc``; listings leave it out unless asked)."""
        for experiment_id, run in self.runs(experiment_ids, deleted_only=True):
            yield experiment_id, run.info.run_id

    def fetch_run(self, run_id: str) -> MlflowRunRecord:
        client = self.client
        run = self._call(f'get_run {run_id}', client.get_run, run_id)
        info, data = run.info, run.data
        metrics = {key: [(int(m.step), float(m.value), int(m.timestamp))
                         for m in self._call(f'get_metric_history {run_id} {key}', client.get_metric_history,
                                             run_id, key)]
                   for key in sorted(data.metrics)}
        artifacts, skipped, companions = self._read_artifacts(run_id, info.artifact_uri)
        return MlflowRunRecord(
            run_id=info.run_id, experiment_id=str(info.experiment_id), run_name=info.run_name or info.run_id,
            status=info.status, start_time=info.start_time, end_time=info.end_time,
            params=dict(data.params), tags=dict(data.tags), metrics=metrics, lifecycle_stage=info.lifecycle_stage,
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
