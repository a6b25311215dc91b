"""The MLflow source's transforms: fetch each run through MLflow's client and map it to a ``RunData``.

``ReadMlflow`` chains them::

    run ids ─run_batches─▶ ListRuns ─SpreadRuns─▶ FetchRuns (params, tags, full metric histories,
            artifacts: from a SQL store many runs a read, from other stores a run at a time)
            ─▶ (RunData, dead letters) ─SplitDeadLetters─▶ RunData (``runs``); dead letters ─▶ ``skipped``

The mapping (``mlflow_run_data``) is a pure function of an ``MlflowRunRecord``.
"""
from __future__ import annotations

import dataclasses
import io
import posixpath
import re
from typing import Any, Dict, List, Optional, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from connectors.mlflow_source import MlflowRunRecord, MlflowSource, SteppedImagePart, stepped_image_part
from transforms.counted import CountedDoFn
from transforms.counters import COUNTS, NAMESPACE, SKIPPED
from transforms.sequence_names import hold_aim_names
from runmodel import METRIC, RunData, RunSpec, Series, Skip, merge_series

__all__ = ['ReadMlflow', 'SplitDeadLettersFn', 'FetchMlflowRunFn', 'run_batches', 'BULK_RUNS', 'SPREAD',
           'mlflow_run_data', 'metric_series', 'artifact_series', 'stepped_image_series', 'image_points',
           'run_inputs_and_models', 'run_links', 'run_identity', 'aim_tags', 'user_tags', 'parent_tag',
           'svg_to_png', 'svg_supported', 'SVG_MAX_SIDE', 'SKIPPED', 'NOTE_TAG', 'PARENT_TAG', 'PARENT_AIM_TAG',
           'SYSTEM_TAG_PREFIX', 'AIM_TAG_MAX_CHARS']

NOTE_TAG = 'mlflow.note.content'  # where MLflow keeps a run's description
BULK_RUNS = 100  # runs read together from a SQL store, at most (its search_runs then takes one page)
SPREAD = 16  # elements a bulk-read plan is cut into, at least (so that every worker has several)
PARENT_TAG = 'mlflow.parentRunId'  # set on nested runs (autolog's tuning trials, start_run(nested=True))
PARENT_AIM_TAG = 'parent_run'  # the Aim tag 'parent_run=<id>' (MLflow's own key, 51 characters with an id, is too long)
SYSTEM_TAG_PREFIX = 'mlflow.'
# Aim's rules for a tag name: its UI's tag form requires 1 to 50 characters, and its tag API strips
# surrounding whitespace (aim/web/api/tags/views.py); in its SQLite store a name is unique, so one tag is
# shared by every run that has it.
AIM_TAG_MAX_CHARS = 50


def run_identity(run_id: str) -> str:
    """The same MLflow run maps to one Aim run however it is reached (file store, database or server)."""
    return f'mlflow:{run_id}'


def user_tags(tags: Dict[str, str]) -> Dict[str, str]:
    """The tags a user set (MLflow's own ``mlflow.*`` tags left out), by key."""
    return {k: v for k, v in sorted(tags.items()) if not k.startswith(SYSTEM_TAG_PREFIX)}


def _tag_problem(name: str) -> Optional[str]:
    if len(name) > AIM_TAG_MAX_CHARS:
        return f'tag longer than the {AIM_TAG_MAX_CHARS} characters Aim allows a tag name ({len(name)})'
    if any(ch < ' ' or ch == '\x7f' for ch in name):
        return 'tag holds a line break or control character, which an Aim tag name cannot show'
    if name != name.strip():
        return 'tag starts or ends with whitespace, which Aim strips from tag names'
    return None


def aim_tags(tags: Dict[str, str]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """User tags (``user_tags``) → Aim run tag names: ``key=value``, or ``key`` alone when the value is
    empty; and ``(key, why)`` for each tag Aim cannot hold as a tag name (it stays in the run's ``tags``
    attribute either way)."""
    names: List[str] = []
    refused: List[Tuple[str, str]] = []
    for key, value in sorted(tags.items()):
        name = f'{key}={value}' if value.strip() else key
        problem = _tag_problem(name)
        if problem:
            refused.append((key, problem))
        elif name not in names:  # 'a=b' with value 'c' and 'a' with value 'b=c' are one tag
            names.append(name)
    return names, refused


def parent_tag(tags: Dict[str, str]) -> Optional[str]:
    """The Aim tag that ties a nested run to its parent (``parent_run=<parent id>``), so that Aim can
    filter a search's trials (``'parent_run=…' in run.tags``); None for a top-level run. MLflow's run ids
    (32 hex digits) always make a valid Aim tag name; one that does not is left to the attribute."""
    parent = (tags.get(PARENT_TAG) or '').strip()
    if not parent:
        return None
    name = f'{PARENT_AIM_TAG}={parent}'
    return None if _tag_problem(name) else name


def _seconds(millis: Optional[int]) -> Optional[float]:
    return None if millis is None else millis / 1000.0


def metric_series(key: str, history: List[Tuple[int, float, int]]) -> Tuple[Series, int]:
    """One MLflow metric history → one Aim metric series (empty context), ordered by step. At a step
    logged more than once the point MLflow returns last wins (histories come ordered by timestamp);
    returns the series and how many points it superseded."""
    series = Series(METRIC, key, {}, source=key)
    for position, (step, value, timestamp) in enumerate(history):
        series.append(step, timestamp / 1000.0, value, position)
    if not len(series):
        return series, 0
    return merge_series([series])


def _image_readable(data: bytes) -> bool:
    from PIL import Image as PILImage, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError):
        return False


SVG_MAX_SIDE = 4096  # pixels; a bigger SVG is rendered scaled down to fit (its aspect ratio kept)
SVG_EXTRA = 'runferry[svg] (resvg-py)'
SVG_DPI = 96.0  # CSS pixels: 1in = 96px, 1pt = 4/3 px (resvg-py's default, 0, makes pt/mm sizes invalid)
_LENGTH = re.compile(r'\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|pt|pc|in|cm|mm)?\s*')
_PIXELS_PER_UNIT = {None: 1.0, 'px': 1.0, 'pt': SVG_DPI / 72, 'pc': SVG_DPI / 6, 'in': SVG_DPI,
                    'cm': SVG_DPI / 2.54, 'mm': SVG_DPI / 25.4}


def svg_supported() -> bool:
    """Whether SVG artifacts can become images here: resvg-py (the ``svg`` extra) is installed."""
    try:
        import resvg_py  # noqa: F401
    except ImportError:
        return False
    return True


def _svg_size(text: str) -> Optional[Tuple[float, float]]:
    """The SVG's own size in pixels (``width``/``height`` in absolute units, else its ``viewBox``), None
    when the root does not say."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    width, height = (_LENGTH.fullmatch(root.get(a, '')) for a in ('width', 'height'))
    if width and height:
        return (float(width.group(1)) * _PIXELS_PER_UNIT[width.group(2)],
                float(height.group(1)) * _PIXELS_PER_UNIT[height.group(2)])
    box = (root.get('viewBox') or '').replace(',', ' ').split()
    if len(box) == 4:
        try:
            return float(box[2]), float(box[3])
        except ValueError:
            return None
    return None


def svg_to_png(data: bytes) -> bytes:
    """An SVG document → PNG bytes, rendered by resvg (a Rust library in a self-contained wheel: no
    system library) at the SVG's own size (absolute units at ``SVG_DPI``: matplotlib's 288pt is 384
    pixels), scaled down to at most ``SVG_MAX_SIDE`` pixels a side. ValueError when it is not an SVG
    resvg can render; ImportError without resvg-py."""
    import resvg_py

    text = data.decode('utf-8')  # UnicodeDecodeError is a ValueError
    options = {'dpi': SVG_DPI}
    size = _svg_size(text)
    if size and max(size) > SVG_MAX_SIDE:
        scale = SVG_MAX_SIDE / max(size)
        options.update(width=max(1, round(size[0] * scale)), height=max(1, round(size[1] * scale)))
    return bytes(resvg_py.svg_to_bytes(svg_string=text, **options))


def artifact_series(path: str, kind: str, data: bytes, wall_time: float) -> Series:
    """One artifact → a one-point series named by its path (step 0); payloads as ``transforms.plugins``
    shapes them for ``connectors.aim_objects``. An SVG's payload must already be its PNG rendering
    (``svg_to_png``): the image is a PNG, captioned with the SVG's path."""
    ext = posixpath.splitext(path)[1].lower().lstrip('.')
    if ext == 'svg' and kind == 'image':
        ext = 'png'
    if kind == 'text':
        payload = data.decode('utf-8', errors='replace')
    else:
        payload = [{'data': data, 'format': ext, 'caption': path}]
    series = Series(kind, path, {}, source=path)
    series.append(0, wall_time, payload, 0)
    return series


def run_links(record: MlflowRunRecord) -> Dict[str, str]:
    """The attributes that tie a run to others: ``mlflow_parent_run_id`` for a nested run."""
    parent = (record.tags.get(PARENT_TAG) or '').strip()
    return {'mlflow_parent_run_id': parent} if parent else {}


def stepped_image_series(key: str, images: List[Tuple[SteppedImagePart, str, bytes]]) -> Series:
    """The images MLflow logged under one key at steps (``log_image(key=..., step=...)``: one file each)
    → one Aim image sequence named by the key, over their steps, at MLflow's timestamps. Images logged
    at the same step are one point holding them all (oldest first), at the time of the last; each
    image is captioned with its artifact path."""
    by_step: Dict[int, List[Tuple[SteppedImagePart, str, bytes]]] = {}
    for image in images:
        by_step.setdefault(image[0].step, []).append(image)
    series = Series('image', key, {}, source=f'images/{key}')
    for position, step in enumerate(sorted(by_step)):
        at_step = sorted(by_step[step], key=lambda image: (image[0].timestamp, image[0].image_id))
        payload = [{'data': data, 'format': 'png', 'caption': path} for _, path, data in at_step]
        series.append(step, at_step[-1][0].timestamp / 1000.0, payload, position)
    return series


def image_points(record: MlflowRunRecord) -> int:
    """How many image points a run's artifacts are: one per image file, except that stepped images make
    one point per key and step (``stepped_image_series``)."""
    stepped, plain = set(), 0
    for path, kind, _ in record.artifacts:
        part = stepped_image_part(path)
        if part is not None:
            stepped.add((part.key, part.step))
        elif kind == 'image':
            plain += 1
    return plain + len(stepped)


def run_inputs_and_models(record: MlflowRunRecord) -> Dict[str, Any]:
    """The run attributes ``mlflow_datasets`` (each dataset of ``log_input``: name, digest, source type,
    source, schema, profile, context, tags) and ``mlflow_models`` (each logged model: name, model id,
    flavors, type, status, step, artifact location, params, metrics, tags), where the run has any."""
    attributes: Dict[str, Any] = {}
    if record.datasets:
        attributes['mlflow_datasets'] = [dataclasses.asdict(dataset) for dataset in record.datasets]
    if record.models:
        attributes['mlflow_models'] = [dataclasses.asdict(model) for model in record.models]
    return attributes


def _image_problem(path: str, data: bytes) -> Tuple[Optional[bytes], Optional[str]]:
    """An image artifact's bytes as Aim will hold them (an SVG rendered to PNG), or why it cannot be."""
    if posixpath.splitext(path)[1].lower() == '.svg':
        try:
            data = svg_to_png(data)
        except ImportError:
            return None, f'SVG image: rendering it needs {SVG_EXTRA}'
        except ValueError as error:
            return None, f'SVG that resvg cannot render: {error}'
    if not _image_readable(data):
        return None, 'image format that Aim cannot store (Pillow cannot read it)'
    return data, None


def _stepped_images(source: str, images: List[Tuple[SteppedImagePart, str, bytes]]
                    ) -> Tuple[List[Series], List[Skip]]:
    """Stepped images → one series per key; an unreadable image is a dead letter (a lost point only when
    no other image of its key is at its step)."""
    series, skips = [], []
    by_key: Dict[str, List[Tuple[SteppedImagePart, str, bytes]]] = {}
    for part, path, data in images:
        by_key.setdefault(part.key, []).append((part, path, data))
    for key in sorted(by_key):
        readable, bad = [], []
        for part, path, data in by_key[key]:
            _, problem = _image_problem(path, data)
            (bad if problem else readable).append((part, path, data, problem))
        kept_steps = {part.step for part, _, _, _ in readable}
        lost_steps = set()
        for part, path, _, problem in bad:
            lost = part.step not in kept_steps and part.step not in lost_steps
            lost_steps.add(part.step)
            skips.append(Skip(f'{source}/{path}', problem, 'artifact', count=1 if lost else 0))
        if readable:
            series.append(stepped_image_series(key, [(part, path, data) for part, path, data, _ in readable]))
    return series, skips


def mlflow_run_data(record: MlflowRunRecord, experiment: str) -> Tuple[RunData, List[Skip]]:
    """One MLflow run as read → the Aim run to write, and dead letters (superseded points, artifacts
    that have no Aim object, tags that cannot be Aim tags)."""
    source = f'mlflow run {record.run_id}'
    skips: List[Skip] = []
    series: List[Series] = []
    for key in sorted(record.metrics):
        merged, superseded = metric_series(key, record.metrics[key])
        if len(merged):
            series.append(merged)
        if superseded:
            skips.append(Skip(source, 'duplicate step: superseded by a later point with the same step', 'point',
                              count=superseded, detail=key))
    artifact_time = _seconds(record.end_time if record.end_time is not None else record.start_time) or 0.0
    stepped = []
    for path, kind, data in record.artifacts:
        part = stepped_image_part(path)
        if part is not None:
            stepped.append((part, path, data))
            continue
        if kind == 'image':
            data, problem = _image_problem(path, data)
            if problem:
                skips.append(Skip(f'{source}/{path}', problem, 'artifact'))
                continue
        series.append(artifact_series(path, kind, data, artifact_time))
    stepped_series, stepped_skips = _stepped_images(source, stepped)
    series += stepped_series
    skips += stepped_skips
    for path, reason in record.skipped_artifacts:
        skips.append(Skip(f'{source}/{path}', reason, 'artifact'))
    series, unnamed = hold_aim_names(series, source)
    skips += unnamed
    tags = user_tags(record.tags)
    tag_names, refused = aim_tags(tags)
    parent = parent_tag(record.tags)
    if parent and parent not in tag_names:
        tag_names.append(parent)
    for key, reason in refused:  # no point is lost (count 0): the tag stays in the 'tags' attribute
        skips.append(Skip(source, reason, 'tag', count=0, detail=key))
    spec = RunSpec(
        identity=run_identity(record.run_id),
        name=record.run_name,
        experiment=experiment,
        attributes={
            'mlflow_run_id': record.run_id,
            'mlflow_experiment_id': record.experiment_id,
            'mlflow_run_name': record.run_name,
            'mlflow_status': record.status,
            'mlflow_lifecycle_stage': record.lifecycle_stage,
            'params': dict(sorted(record.params.items())),
            'tags': tags,
            **run_links(record),
            **run_inputs_and_models(record),
        },
        description=record.tags.get(NOTE_TAG),
        tags=tag_names,
        creation_time=_seconds(record.start_time),
        end_time=_seconds(record.end_time),
    )
    return RunData(spec, series), skips


def run_batches(run_ids: List[str], bulk: bool, most: int = BULK_RUNS, spread: int = SPREAD) -> List[List[str]]:
    """The run ids cut into the pipeline's elements, in order: for a store read in bulk
    (``MlflowSource.reads_in_bulk``) batches of at most ``most`` runs, but small enough that there are at
    least ``spread`` of them to share among the workers; otherwise one run an element."""
    size = min(most, max(1, -(-len(run_ids) // spread))) if bulk else 1
    return [run_ids[i:i + size] for i in range(0, len(run_ids), size)]


class FetchMlflowRunFn(CountedDoFn):
    """A batch of run ids (``run_batches``) → (RunData, dead letters) per run; a run that cannot be read
    is itself a dead letter. The batch is read with ``MlflowSource.fetch_runs``: from a SQL store with one
    listing and one metrics query for all its runs, from other stores run by run."""

    def __init__(self, source: MlflowSource, experiment_names: Dict[str, str]):
        self.source = source
        self.experiment_names = experiment_names
        self.runs_read = Metrics.counter(NAMESPACE, 'runs_read')
        self.runs_skipped = Metrics.counter(NAMESPACE, 'runs_skipped')
        self.points_read = Metrics.counter(NAMESPACE, 'points_read')
        self.artifacts_read = Metrics.counter(NAMESPACE, 'artifacts_read')
        self.artifacts_skipped = Metrics.counter(NAMESPACE, 'artifacts_skipped')
        self.tags_read = Metrics.counter(NAMESPACE, 'tags_read')
        self.tags_skipped = Metrics.counter(NAMESPACE, 'tags_skipped')
        self.models_listed = Metrics.counter(NAMESPACE, 'models_listed')
        self.datasets_listed = Metrics.counter(NAMESPACE, 'datasets_listed')

    def process(self, run_ids: List[str]):
        for run_id, found in self.source.fetch_runs(run_ids, list(self.experiment_names)):
            yield from self._outputs(run_id, found)

    def _outputs(self, run_id: str, found: Union[MlflowRunRecord, Exception]):
        """A run's record → (RunData, dead letters), counted; an error (deleted since listing,
        permissions, server down after retries) → the run as a dead letter."""
        if isinstance(found, Exception):
            self.runs_skipped.inc()
            yield TaggedOutput(SKIPPED, Skip(f'mlflow run {run_id}',
                                             f'run could not be read: {type(found).__name__}: {found}', 'run'))
            return
        record = found
        experiment = self.experiment_names.get(record.experiment_id, record.experiment_id)
        data, skips = mlflow_run_data(record, experiment)
        self.runs_read.inc()
        # every point and artifact read is counted, so that read = written + skipped (each skip's count
        # is a skipped point, counted by SplitDeadLettersFn); by kind where it has one
        by_kind = {METRIC: sum(len(h) for h in record.metrics.values()), 'image': image_points(record)}
        for _, kind, _ in record.artifacts:
            if kind != 'image':
                by_kind[kind] = by_kind.get(kind, 0) + 1
        self.points_read.inc(sum(by_kind.values()) + len(record.skipped_artifacts))
        for kind, count in by_kind.items():
            if count:
                Metrics.counter(NAMESPACE, f'points_read:{kind}').inc(count)
        self.artifacts_read.inc(len(record.artifacts) + len(record.skipped_artifacts))  # = converted + skipped
        self.artifacts_skipped.inc(sum(1 for s in skips if s.kind == 'artifact'))
        self.tags_read.inc(len(data.spec.attributes['tags']))
        self.tags_skipped.inc(sum(1 for s in skips if s.kind == 'tag'))
        self.models_listed.inc(len(record.models))
        self.datasets_listed.inc(len(record.datasets))
        yield data, skips


class SplitDeadLettersFn(CountedDoFn):
    """(RunData, dead letters) → the run, and each dead letter to the ``skipped`` output, its points
    counted as skipped (so that points read = written + skipped)."""

    def __init__(self):
        self.points_skipped = Metrics.counter(NAMESPACE, 'points_skipped')

    def process(self, element: Tuple[RunData, List[Skip]]):
        data, skips = element
        for skip in skips:
            self.points_skipped.inc(skip.count)
            yield TaggedOutput(SKIPPED, skip)
        yield data


class ReadMlflow(beam.PTransform):
    """The planned run ids → runs (``RunData``), fetched in batches (``run_batches``). Applied to the
    pipeline's start; outputs ``runs`` and ``skipped`` (runs that could not be read, and what a run holds
    that cannot be kept)."""

    def __init__(self, source: MlflowSource, run_ids: List[str], experiment_names: Dict[str, str]):
        super().__init__()
        self.source = source
        self.run_ids = run_ids
        self.experiment_names = experiment_names  # experiment id -> its name

    def expand(self, begin: beam.pvalue.PBegin) -> Dict[str, beam.PCollection]:
        fetched = (begin
                   | 'ListRuns' >> beam.Create(run_batches(self.run_ids, self.source.reads_in_bulk()),
                                               reshuffle=False)
                   | 'SpreadRuns' >> beam.Reshuffle()
                   | 'FetchRuns' >> beam.ParDo(FetchMlflowRunFn(self.source, self.experiment_names))
                   .with_outputs(SKIPPED, COUNTS, main='runs'))
        split = fetched.runs | 'SplitDeadLetters' >> beam.ParDo(SplitDeadLettersFn()).with_outputs(SKIPPED, COUNTS,
                                                                                                   main='runs')
        skipped = (fetched[SKIPPED], split[SKIPPED]) | 'FlattenSkipped' >> beam.Flatten()
        counts = (fetched[COUNTS], split[COUNTS]) | 'FlattenCounts' >> beam.Flatten()
        return {'runs': split.runs, 'skipped': skipped, 'counts': counts}
