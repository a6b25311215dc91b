"""Writing one run (a ``RunData`` whose series are held whole) into any MLflow tracking store.

Everything goes through ``MlflowClient``, so file, SQLite, PostgreSQL and ``mlflow server`` stores all
work, and artifacts land wherever the store keeps them (local, S3/GCS, a server's proxy).

The mapping (keys: ``connectors.mlflow_names``):

* the run: found again by its tag ``runferry.source_id`` (the digest of the source's identity; the
  identity itself, masked, is the tag ``runferry.source``) among the experiment's active runs, or created
  with the run's name, its start time (first point's wall time, ms) and those tags; when everything is
  written it is set FINISHED with its end time (last point's wall time). A run killed midway stays
  RUNNING until a re-run completes it;
* metrics: one MLflow metric per sequence, each point with its step, wall time (ms) and value, in
  ``log_batch`` calls of at most 1,000 metrics and under 1 MB; into a SQL store opened directly, in bulk
  transactions into its tables instead (``connectors.mlflow_sql``, the same rows ``log_batch`` writes,
  ``latest_metrics`` included). MLflow stores ±inf as ±1.797e308;
* hparams → params (``str(value)``; a list or dict as JSON); per-context hparams that disagree →
  ``<context>/<name>``. A value longer than MLflow's 6,000 characters → the tag ``runferry.param.<name>``
  (up to 8,000) or else the artifact ``params/<name>.txt``; counted as ``params_moved``. A param the run
  already holds with another value (MLflow params never change) → a dead letter;
* other run attributes (the TensorBoard run's URL...) → tags ``runferry.<name>``; hparams configs →
  the artifact ``tensorboard/<name>.json``;
* images → MLflow's stepped images, written by ``MlflowClient.log_image(key=, step=, timestamp=)`` (a PNG
  and a webp thumbnail under ``images/``, which MLflow's UI shows with its step slider); the n-th sample
  of an event (n ≥ 1) is the key ``<key>/<n>``;
* text → ``text/<key>/step_<step>.txt``; terminal log lines (``runmodel.LOG_LINE``) → one file,
  ``console/<key>.txt``, a line each in step order; audio → ``audio/<key>/step_<step>[_<n>].<wav|mp3|flac>``;
* distributions → ``histograms/<key>.json`` (``{"key", "name", "context", "steps": [{"step",
  "timestamp", "edges", "counts"}, ...]}``, every step's exact edges and counts): MLflow has no
  histogram type.

**Idempotent**: on a run found again, only what the store does not hold is written: a metric point is
compared by (key, step, timestamp, value) with ``get_metric_history``, a param by value, an image by
(key, step, timestamp), a text/audio artifact by its path and size, a histogram file by its content
(rewritten whole when steps were added). What the store already held is counted as ``present``.

An artifact cut short (a kill or a dropped connection while a file store copied it, or a proxy wrote it)
is not taken as present: a text or audio file must have its content's size, a histogram file must parse,
and a stepped image must have both its parts (MLflow writes the PNG, then its ``+compressed.webp``
thumbnail, so a thumbnail listed means the PNG was whole; a PNG alone is rewritten, with its thumbnail,
under its own name, so the step keeps one image). What is rewritten counts as written.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import posixpath
import tempfile
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from connectors.mlflow_names import (RENAMED_TAG, SOURCE_ID_TAG, SOURCE_TAG, TAG_PREFIX, context_prefix, key_problem,
                                     mlflow_key, source_id)
from connectors.mlflow_source import normalize_tracking_uri, stepped_image_part
from connectors.mlflow_sql import BULK_ROWS, SqlMetricWriter
from connectors.redact import mask_text
from runmodel import METRIC, RunData, Series, Skip

__all__ = ['MlflowRunWriter', 'MlflowWrittenRun', 'MAX_METRICS_PER_BATCH', 'MAX_PARAMS_PER_BATCH',
           'MAX_BATCH_BYTES', 'MAX_PARAM_LENGTH', 'MAX_TAG_LENGTH', 'HISTOGRAM_DIR', 'ms']

MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
MAX_PARAMS_PER_BATCH = 100  # MAX_PARAMS_TAGS_PER_BATCH
MAX_BATCH_BYTES = 900_000  # under MAX_BATCH_LOG_REQUEST_SIZE (1e6), with room for the request's framing
MAX_PARAM_LENGTH = 6000  # MAX_PARAM_VAL_LENGTH (MLflow would truncate a longer one silently)
MAX_TAG_LENGTH = 8000  # MAX_TAG_VAL_LENGTH (the same)
MLFLOW_HTTP_RETRIES = '2'  # MLflow's own retries per HTTP request (its default, 7, is ~4 minutes a call)
HISTOGRAM_DIR = 'histograms'
BULK_SWITCH = 'RUNFERRY_MLFLOW_BULK'  # '0': metrics through log_batch even into a SQL store
HPARAMS = 'hparams'
HPARAMS_BY_CONTEXT = 'hparams_by_context'
CONFIG_ATTRIBUTES = ('hparams_config', 'hparams_config_by_context')
ARTIFACT_KINDS = ('image', 'text', 'audio', 'distribution', 'log_line')
CONSOLE_DIR = 'console'
_SQL_MAX = 1.7976931348623157e308  # what MLflow's SQL store keeps of ±inf


def ms(seconds: float) -> int:
    """A wall time in seconds → MLflow's milliseconds."""
    return int(round(seconds * 1000))


def _stored(value: float) -> Any:
    """A metric value as MLflow gives it back: NaN as a marker (NaN ≠ NaN), ±inf as ±1.797e308."""
    if math.isnan(value):
        return 'nan'
    if math.isinf(value):
        return _SQL_MAX if value > 0 else -_SQL_MAX
    return float(value)


def _param_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


@dataclasses.dataclass
class MlflowWrittenRun:
    run_id: str
    created: bool
    # points the run holds from its source, by kind: written now or already there (as an Aim re-run
    # counts what it rewrites), so that points read = written + skipped on every run of the command
    points: Dict[str, int]
    present: int = 0  # of those, the points the store already held (nothing was sent for them)
    renamed: Dict[str, str] = dataclasses.field(default_factory=dict)  # source key -> MLflow key
    params_moved: int = 0


class MlflowRunWriter:
    """Writes runs into the store at ``tracking_uri``. Picklable: it holds only the URI; each worker
    opens its own client."""

    def __init__(self, tracking_uri: str, artifact_location: Optional[str] = None):
        self.tracking_uri = normalize_tracking_uri(tracking_uri)
        # where a new experiment keeps its artifacts; None: the store's default (for a SQL store without a
        # server, MLflow's is ./mlruns in the working directory)
        self.artifact_location = artifact_location
        self._client = None
        self._bulk: Any = False  # not looked at yet
        self._experiment_ids: Dict[str, str] = {}

    def __getstate__(self):
        return {'tracking_uri': self.tracking_uri, 'artifact_location': self.artifact_location, '_client': None,
                '_bulk': False, '_experiment_ids': {}}

    @property
    def bulk(self):
        """The bulk metric writer of a SQL store (``connectors.mlflow_sql``), None for other stores or
        when ``RUNFERRY_MLFLOW_BULK=0`` asks for ``log_batch`` everywhere."""
        if self._bulk is False:
            use = os.environ.get(BULK_SWITCH, '1') != '0'
            self._bulk = SqlMetricWriter.for_client(self.client) if use else None
        return self._bulk

    @property
    def client(self):
        if self._client is None:
            if self.tracking_uri.startswith('file:'):
                os.environ.setdefault('MLFLOW_ALLOW_FILE_STORE', 'true')
            os.environ.setdefault('MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR', 'false')
            os.environ.setdefault('MLFLOW_HTTP_REQUEST_MAX_RETRIES', MLFLOW_HTTP_RETRIES)
            from mlflow import MlflowClient
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # ------------------------------------------------------------------------------------- the run

    def experiment_id(self, name: str) -> str:
        """The id of the active experiment ``name``, created when missing (by another worker meanwhile: found)."""
        if name in self._experiment_ids:
            return self._experiment_ids[name]
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(name, artifact_location=self.artifact_location)
            except MlflowException as error:
                if error.error_code != 'RESOURCE_ALREADY_EXISTS':
                    raise
                experiment = self.client.get_experiment_by_name(name)
                experiment_id = experiment.experiment_id
        elif experiment.lifecycle_stage != 'active':
            raise ValueError(f'experiment {name!r} is deleted in MLflow: restore it (mlflow experiments restore) '
                             f'or give another --experiment')
        else:
            experiment_id = experiment.experiment_id
        self._experiment_ids[name] = experiment_id
        return experiment_id

    def find_run(self, experiment_id: str, identity: str):
        """The active run written before from the source run ``identity``, or None."""
        found = self.client.search_runs([experiment_id], f"tags.`{SOURCE_ID_TAG}` = '{source_id(identity)}'",
                                        max_results=2)
        return found[0] if found else None

    def write(self, data: RunData, on_skip: Callable[[Skip], None]) -> MlflowWrittenRun:
        """Write ``data`` (series held whole, one ``Series`` per sequence, steps unique) into its run,
        creating the run when no earlier write made it; dead letters go to ``on_skip``."""
        spec = data.spec
        experiment_id = self.experiment_id(spec.experiment)
        run = self.find_run(experiment_id, spec.identity)
        created = run is None
        if created:
            tags = {SOURCE_TAG: _fit_tag(mask_text(spec.identity)), SOURCE_ID_TAG: source_id(spec.identity)}
            start = ms(spec.creation_time) if spec.creation_time is not None else None
            run = self.client.create_run(experiment_id, start_time=start, tags=tags, run_name=spec.name)
        written = _RunWrite(self.client, run, created, data, on_skip, self.bulk)
        result = written.run()
        end = ms(spec.end_time) if spec.end_time is not None else None
        if run.info.end_time is not None and end is not None:
            end = max(end, run.info.end_time)
        self.client.set_terminated(run.info.run_id, 'FINISHED', end_time=end)
        return result


def _fit_tag(value: str) -> str:
    return value if len(value) <= MAX_TAG_LENGTH else value[:MAX_TAG_LENGTH - 1] + '…'


class _RunWrite:
    """One write of one run: what to log, compared with what the run already holds."""

    def __init__(self, client, run, created: bool, data: RunData, on_skip: Callable[[Skip], None], bulk=None):
        self.client = client
        self.bulk = bulk  # a connectors.mlflow_sql.SqlMetricWriter for a SQL store opened directly, or None
        self.run_id = run.info.run_id
        self.held = run.data if not created else None  # None: a new run holds nothing
        self.created = created
        self.data = data
        self.on_skip = on_skip
        self.points: Dict[str, int] = {}
        self.present = 0
        self.renamed: Dict[str, str] = {}
        self.params_moved = 0
        self._keys: Dict[Tuple[str, str], Tuple[str, str]] = {}  # (namespace, key) -> (name, context) that has it
        # artifact directory -> {path: size in bytes (None when the store does not say)} when first listed
        self._listings: Dict[str, Dict[str, Optional[int]]] = {}
        self._images: Optional[Set[Tuple[str, int, int]]] = None

    def run(self) -> MlflowWrittenRun:
        self.write_attributes()
        metrics = [s for s in self.data.series if s.kind == METRIC and len(s)]
        self.write_metrics(metrics)
        for series in self.data.series:
            if series.kind == METRIC or not len(series):
                continue
            if series.kind not in ARTIFACT_KINDS:
                self.skip(series, len(series), f'MLflow destination does not write {series.kind} points')
                continue
            key = self.key_of(series, image=series.kind == 'image')
            if key is None:
                continue
            getattr(self, f'write_{series.kind}')(series, key)
        if self.renamed:
            self.write_renamed()
        return MlflowWrittenRun(self.run_id, self.created, self.points, self.present, self.renamed, self.params_moved)

    # ---------------------------------------------------------------------------------- helpers

    def count(self, kind: str, written: int, present: int = 0) -> None:
        """Points of ``kind`` the run now holds from its source: ``written`` now, ``present`` before."""
        if written or present:
            self.points[kind] = self.points.get(kind, 0) + written + present
        self.present += present

    def skip(self, series: Series, count: int, reason: str) -> None:
        self.on_skip(Skip(self.data.origin, reason, 'point', count=count,
                          detail=f'{series.kind} {series.name!r} context {series.context}'))

    def key_of(self, series: Series, image: bool = False) -> Optional[str]:
        """The series' MLflow key, or None (its points dead letters) when MLflow would refuse it or another
        sequence of the run has it."""
        key = mlflow_key(series.name, series.context, image=image)
        problem = key_problem(key)
        namespace = 'metric' if series.kind == METRIC else 'artifact'
        owner = self._keys.setdefault((namespace, key), (series.name, str(series.context)))
        if problem is None and owner != (series.name, str(series.context)):
            problem = f'MLflow key {key!r} already holds {owner[0]!r} context {owner[1]} (after renaming)'
        if problem is not None:
            self.skip(series, len(series), problem)
            return None
        original = f'{_context_label(series.context)}{series.name}'
        if key != original:
            self.renamed[original] = key
        return key

    def listing(self, directory: str) -> Dict[str, Optional[int]]:
        """Artifact files directly under ``directory`` with their sizes (nothing for a run just created)."""
        if self.created:
            return {}
        if directory not in self._listings:
            self._listings[directory] = {info.path: info.file_size
                                         for info in self.client.list_artifacts(self.run_id, directory)
                                         if not info.is_dir}
        return self._listings[directory]

    def holds_whole(self, directory: str, path: str, content: bytes) -> bool:
        """The store holds ``path`` with ``content``'s size (a file cut short is not held)."""
        size = self.listing(directory).get(path, -1)
        return size == len(content) or (size is None and path in self.listing(directory))

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    # ------------------------------------------------------------------------- params and tags

    def write_attributes(self) -> None:
        attributes = self.data.spec.attributes
        params: Dict[str, str] = {}
        sources: Dict[str, str] = {}
        for name, value in (attributes.get(HPARAMS) or {}).items():
            self._param(params, sources, mlflow_key(name), value, name)
        for context, values in (attributes.get(HPARAMS_BY_CONTEXT) or {}).items():
            for name, value in values.items():
                if name in (attributes.get(HPARAMS) or {}):
                    continue  # every context agrees: the plain param holds it
                self._param(params, sources, mlflow_key(name, {'entry': context}), value, f'{context}/{name}')
        tags: Dict[str, str] = {}
        for name, value in attributes.items():
            if name in (HPARAMS, HPARAMS_BY_CONTEXT):
                continue
            if name in CONFIG_ATTRIBUTES:
                self.log_text(json.dumps(value, indent=1, sort_keys=True), f'tensorboard/{name}.json')
                continue
            text = mask_text(value if isinstance(value, str) else json.dumps(value, sort_keys=True))
            if len(text) > MAX_TAG_LENGTH:
                self.log_text(text, f'attributes/{mlflow_key(name)}.txt')
            else:
                tags[TAG_PREFIX + mlflow_key(name)] = text
        held = dict(self.held.params) if self.held is not None else {}
        new_params = {}
        for key, text in params.items():
            if key not in held:
                new_params[key] = text
            elif held[key] != text:
                self.on_skip(Skip(self.data.origin, 'MLflow params never change: the run holds another value',
                                  'point', count=0, detail=f'param {sources[key]!r}: {text!r}, MLflow holds {held[key]!r}'))
        for key, text in list(new_params.items()):
            if len(text) > MAX_PARAM_LENGTH:  # MLflow would cut it silently: kept whole elsewhere
                del new_params[key]
                self.params_moved += 1
                if len(text) <= MAX_TAG_LENGTH:
                    tags[f'{TAG_PREFIX}param.{key}'] = text
                else:
                    self.log_text(text, f'params/{key}.txt')
        self._log_params_and_tags(new_params, tags)
        for kind, count in self.data.attribute_points.items():
            if new_params or self.created:
                self.count(kind, count)
            else:
                self.count(kind, 0, count)

    def _param(self, params: Dict[str, str], sources: Dict[str, str], key: str, value: Any, name: str) -> None:
        problem = key_problem(key)
        if problem is None and key in params:
            problem = f'MLflow param {key!r} already holds {sources[key]!r} (after renaming)'
        if problem is not None:
            self.on_skip(Skip(self.data.origin, problem, 'point', count=0, detail=f'param {name!r}'))
            return
        if key != name:
            self.renamed[name] = key
        params[key] = _param_text(value)
        sources[key] = name

    def _log_params_and_tags(self, params: Dict[str, str], tags: Dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        entities = [Param(k, v) for k, v in sorted(params.items())]
        tag_entities = [RunTag(k, v) for k, v in sorted(tags.items())]
        for start in range(0, max(len(entities), len(tag_entities)), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=entities[start:start + MAX_PARAMS_PER_BATCH],
                                  tags=tag_entities[start:start + MAX_PARAMS_PER_BATCH], synchronous=True)

    def write_renamed(self) -> None:
        text = json.dumps(self.renamed, sort_keys=True)
        if len(text) <= MAX_TAG_LENGTH:
            self.client.set_tag(self.run_id, RENAMED_TAG, text)
        else:
            self.log_text(text, 'runferry/renamed_keys.json')
            self.client.set_tag(self.run_id, RENAMED_TAG, 'see the artifact runferry/renamed_keys.json')

    # ---------------------------------------------------------------------------------- metrics

    def write_metrics(self, metrics: List[Series]) -> None:
        """Every metric point the run does not hold, in batches: ``log_batch`` calls at MLflow's limits, or
        bulk transactions straight into a SQL store's tables (``connectors.mlflow_sql``)."""
        bulk = self.bulk
        limit = BULK_ROWS if bulk is not None else MAX_METRICS_PER_BATCH
        held_keys = set(self.held.metrics) if self.held is not None else set()
        held_all = bulk.history(self.run_id) if bulk is not None and held_keys else {}
        batch: List[Tuple[str, float, int, int]] = []
        size = 0
        for series in metrics:
            key = self.key_of(series)
            if key is None:
                continue
            if bulk is not None:
                held = held_all.get(key, set())
            else:
                held = self._history(key) if key in held_keys else set()
            written = present = refused = 0
            for step, wall_time, value in zip(series.steps, series.wall_times, series.values):
                timestamp = ms(wall_time)
                if timestamp < 0:
                    refused += 1
                    continue
                if (int(step), timestamp, _stored(value)) in held:
                    present += 1
                    continue
                batch.append((key, float(value), timestamp, int(step)))
                size += len(key) + 80
                written += 1
                if len(batch) >= limit or (bulk is None and size >= MAX_BATCH_BYTES):
                    self._log_metrics(batch)
                    batch, size = [], 0
            if refused:
                self.skip(series, refused, 'MLflow refuses a negative timestamp (wall time before 1970)')
            self.count(METRIC, written, present)
        if batch:
            self._log_metrics(batch)

    def _history(self, key: str) -> Set[Tuple[int, int, Any]]:
        return {(m.step, m.timestamp, _stored(m.value)) for m in self.client.get_metric_history(self.run_id, key)}

    def _log_metrics(self, batch: List[Tuple[str, float, int, int]]) -> None:
        if self.bulk is not None:
            self.bulk.write(self.run_id, batch)
            return
        from mlflow.entities import Metric

        self.client.log_batch(self.run_id, metrics=[Metric(key, value, timestamp, step)
                                                    for key, value, timestamp, step in batch], synchronous=True)

    # -------------------------------------------------------------------------------- artifacts

    def write_image(self, series: Series, key: str) -> None:
        from PIL import Image

        held, cut = self._held_images()
        written = present = 0
        for step, wall_time, samples in zip(series.steps, series.wall_times, series.values):
            timestamp = ms(wall_time)
            missing = [(index, sample) for index, sample in enumerate(samples)
                       if (_sample_key(key, index), int(step), timestamp) not in held]
            if not missing:
                present += 1
                continue
            try:
                for index, sample in missing:
                    sample_key = _sample_key(key, index)
                    with Image.open(io.BytesIO(sample['data'])) as image:
                        image.load()
                        stem = cut.get((sample_key, int(step), timestamp))
                        if stem is not None:  # its PNG without a thumbnail: both rewritten under its own id
                            self._rewrite_image(image, stem)
                        else:
                            self.client.log_image(self.run_id, image, key=sample_key, step=int(step),
                                                  timestamp=timestamp, synchronous=True)
            except (OSError, ValueError) as error:  # an image Pillow or MLflow cannot take
                self.skip(series, 1, f'image not written at step {step}: {type(error).__name__}: {error}')
                continue
            written += 1
        self.count('image', written, present)

    def _held_images(self) -> Tuple[Set[Tuple[str, int, int]], Dict[Tuple[str, int, int], str]]:
        """The (key, step, timestamp) of the images the run holds whole (a PNG and its thumbnail, which MLflow
        writes after the PNG), and of those cut short (a PNG with no thumbnail: a write stopped between the
        two, or during the PNG), each with its files' common path stem."""
        if self._images is None:
            parts: Dict[Tuple[str, int, int, str], Dict[str, str]] = {}
            for path, size in self.listing('images').items():
                part = stepped_image_part(path)
                if part is not None and size != 0:
                    parts.setdefault((part.key, part.step, part.timestamp, part.image_id), {})[part.part] = path
            whole = {found[:3] for found, kinds in parts.items() if {'image', 'thumbnail'} <= set(kinds)}
            cut = {found[:3]: kinds['image'][:-len('.png')] for found, kinds in parts.items()
                   if 'image' in kinds and 'thumbnail' not in kinds and found[:3] not in whole}
            self._images = (whole, cut)
        return self._images

    def _rewrite_image(self, image, stem: str) -> None:
        """The PNG and thumbnail of the image whose files are ``<stem>.png`` and ``<stem>+compressed.webp``,
        written as ``MlflowClient.log_image`` writes them, so the step keeps one image."""
        from mlflow.tracking.multimedia import compress_image_size

        directory, _, name = stem.rpartition('/')
        with tempfile.TemporaryDirectory(prefix='runferry-image-') as scratch:
            png = os.path.join(scratch, f'{name}.png')
            image.save(png)
            self.client.log_artifact(self.run_id, png, directory)
            thumbnail = os.path.join(scratch, f'{name}+compressed.webp')
            compress_image_size(image).save(thumbnail)
            self.client.log_artifact(self.run_id, thumbnail, directory)

    def write_text(self, series: Series, key: str) -> None:
        directory = f'text/{key}'
        written = present = 0
        for step, text in zip(series.steps, series.values):
            path = f'{directory}/step_{step}.txt'
            if self.holds_whole(directory, path, text.encode('utf-8')):
                present += 1
                continue
            self.log_text(text, path)
            written += 1
        self.count('text', written, present)

    def write_log_line(self, series: Series, key: str) -> None:
        """The run's terminal lines as one text file (rewritten whole when it differs in size)."""
        path = f'{CONSOLE_DIR}/{key}.txt'
        text = ''.join(line['text'] + '\n' for line in series.values)
        if self.holds_whole(CONSOLE_DIR, path, text.encode('utf-8')):
            self.count('log_line', 0, len(series))
            return
        self.log_text(text, path)
        self.count('log_line', len(series))

    def write_audio(self, series: Series, key: str) -> None:
        directory = f'audio/{key}'
        written = present = 0
        with tempfile.TemporaryDirectory(prefix='runferry-audio-') as scratch:
            for step, clips in zip(series.steps, series.values):
                names = [f'step_{step}{"" if index == 0 else f"_{index}"}.{clip["format"]}'
                         for index, clip in enumerate(clips)]
                missing = [(name, clip) for name, clip in zip(names, clips)
                           if not self.holds_whole(directory, f'{directory}/{name}', clip['data'])]
                if not missing:
                    present += 1
                    continue
                for name, clip in missing:
                    local = os.path.join(scratch, name)
                    with open(local, 'wb') as stream:
                        stream.write(clip['data'])
                    self.client.log_artifact(self.run_id, local, directory)
                    os.unlink(local)
                written += 1
        self.count('audio', written, present)

    def write_distribution(self, series: Series, key: str) -> None:
        path = f'{HISTOGRAM_DIR}/{key}.json'
        steps = [{'step': int(step), 'timestamp': ms(wall_time), 'edges': list(value['edges']),
                  'counts': list(value['counts'])}
                 for step, wall_time, value in zip(series.steps, series.wall_times, series.values)]
        held_steps = self._held_histogram(path)
        present = sum(1 for step in steps if step in held_steps)
        if present < len(steps) or len(held_steps) != len(steps):
            document = {'key': key, 'name': series.name, 'context': series.context, 'steps': steps}
            self.log_text(json.dumps(document), path)
        self.count('distribution', len(steps) - present, present)

    def _held_histogram(self, path: str) -> List[Dict[str, Any]]:
        if path not in self.listing(posixpath.dirname(path)):
            return []
        with tempfile.TemporaryDirectory(prefix='runferry-histogram-') as scratch:
            local = self.client.download_artifacts(self.run_id, path, scratch)
            with open(local, 'rb') as stream:
                try:
                    return json.loads(stream.read()).get('steps', [])
                except ValueError:  # cut short (or not ours): rewritten whole
                    return []


def _sample_key(key: str, index: int) -> str:
    return key if index == 0 else f'{key}/{index}'


def _context_label(context: Dict[str, Any]) -> str:
    prefix = context_prefix(context)
    return f'{prefix}/' if prefix else ''
