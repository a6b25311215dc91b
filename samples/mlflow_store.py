"""MLflow stores filled through MLflow's own client, returning exactly what was logged.

* ``log_rich_run``: params, user and system tags (one with an empty value, one too long to be an Aim
  tag name), a description, several metrics (one with a step logged twice), terminated with an end
  time, and artifacts in nested directories: images (an SVG among them), texts, a WAV clip, and a file
  Aim has no object for (a ``.bin``).
* ``log_many_runs``: many small runs, two client calls each (``create_run`` + ``log_batch``).
* ``log_long_metric``: one metric with a long history, logged 1000 points per ``log_batch``.

Each returns ``{run_id: expected}`` where ``expected`` holds the run as Aim should show it: name, experiment,
params, user tags, ``aim_tags`` (the Aim run tag names they must become: ``key=value``, or ``key`` for an
empty value; none longer than Aim's 50 characters), description, status, start/end time (ms), ``metrics`` ``{key: [(step, value, timestamp
ms)]}`` with one point a step (the later one wins), ``artifacts`` ``{path: (kind, bytes)}`` and
``skipped_artifacts`` (paths). An SVG's expected bytes are the SVG itself: Aim holds its PNG rendering,
which must be ``SVG_SIZE`` pixels with the colors ``SVG_PIXELS`` at those points (``svg_rendering_matches``).
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import tempfile
import wave
from typing import Any, Dict, Iterator, List, Tuple

__all__ = ['log_rich_run', 'log_many_runs', 'log_long_metric', 'log_filled_store', 'stepped_image', 'IMAGE_KEY',
           'IMAGE_STEPS', 'metric_value', 'rich_artifacts', 'scratch_dir',
           'BATCH', 'LONG_TAG_VALUE', 'SVG_LOGO', 'SVG_SIZE', 'SVG_PIXELS', 'svg_rendering_matches']

BATCH = 1000  # MLflow's log_batch limit for metrics
LONG_TAG_VALUE = 'baseline with cosine decay, 500 warm-up steps and label smoothing 0.1'
START_MS = 1_700_000_000_000

Expected = Dict[str, Dict[str, Any]]


@contextlib.contextmanager
def scratch_dir(prefix: str = 'runferry-mlflow-store-') -> Iterator[str]:
    """A temporary directory in memory (/dev/shm) when there is one: MLflow's SQLite store commits each
    call with an fsync, ten times slower on disk here (200 runs: 48 s on disk, 4.4 s in /dev/shm)."""
    parent = '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else None
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def metric_value(key: str, step: int, salt: int = 0) -> float:
    """A deterministic float (a double, as MLflow stores it) that differs by key, step and run."""
    return math.sin(step * 0.01 + len(key) + salt) * (1 + step) / 7.0


def _expected(run, experiment: str, params, tags, description, metrics, artifacts=None, skipped=None,
              aim_tags=()):
    info = run.info
    return {
        'run_id': info.run_id, 'experiment_id': str(info.experiment_id), 'experiment': experiment,
        'name': info.run_name, 'status': info.status, 'start_time': info.start_time, 'end_time': info.end_time,
        'params': dict(params), 'tags': {k: v for k, v in tags.items() if not k.startswith('mlflow.')},
        'aim_tags': sorted(aim_tags),
        'description': description, 'metrics': metrics, 'artifacts': artifacts or {},
        'skipped_artifacts': sorted(skipped or []),
    }


def _dedupe(points: List[Tuple[int, float, int]]) -> List[Tuple[int, float, int]]:
    """One point a step: the one with the latest timestamp (then the last logged)."""
    latest: Dict[int, Tuple[int, float, int]] = {}
    for point in sorted(points, key=lambda p: p[2]):
        latest[point[0]] = point
    return [latest[s] for s in sorted(latest)]


def _png(seed: int) -> bytes:
    from PIL import Image

    image = Image.new('RGB', (16, 8), (seed * 40 % 256, 90, 200))
    image.putpixel((seed % 16, 3), (255, 255, 0))
    out = io.BytesIO()
    image.save(out, format='PNG')
    return out.getvalue()


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new('RGB', (12, 12), (10, seed * 70 % 256, 30)).save(out, format='JPEG', quality=90)
    return out.getvalue()


def _wav(seed: int, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, 'wb') as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(rate)
        frames = bytes(((i * (seed + 3)) % 256) for i in range(2 * rate // 10))
        clip.writeframes(frames)
    return out.getvalue()


# An SVG as plotting libraries write one (XML declaration, viewBox, shapes, a path): red left half, blue
# right half, a green diagonal band; its own size is 24 x 16 pixels.
SVG_LOGO = b'''<?xml version="1.0" encoding="utf-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="24px" height="16px" viewBox="0 0 48 32">
  <rect x="0" y="0" width="24" height="32" fill="#ff0000"/>
  <rect x="24" y="0" width="24" height="32" fill="rgb(0,0,255)"/>
  <path d="M 20 0 L 28 0 L 28 32 L 20 32 Z" fill="#00ff00"/>
</svg>
'''
SVG_SIZE = (24, 16)
SVG_PIXELS = {(2, 8): (255, 0, 0, 255), (21, 8): (0, 0, 255, 255), (12, 8): (0, 255, 0, 255)}


def svg_rendering_matches(png: bytes) -> bool:
    """Whether ``png`` is a rendering of ``SVG_LOGO``: a PNG of its size with its colors."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        if image.format != 'PNG' or image.size != SVG_SIZE:
            return False
        rgba = image.convert('RGBA')
        return all(rgba.getpixel(xy) == color for xy, color in SVG_PIXELS.items())


def rich_artifacts(seed: int) -> Dict[str, bytes]:
    """Artifact path → bytes: one of each kind (and an SVG), in nested directories, plus one Aim cannot take."""
    return {
        'images/chart.png': _png(seed),
        'images/nested/deeper/photo.jpg': _jpeg(seed),
        'notes/readme.md': f'# run {seed}\n\nsome *markdown* ü\n'.encode(),
        'config.yaml': f'lr: 0.{seed + 1}\nlayers: [64, 32]\n'.encode(),
        'data/table.csv': b'a,b\n1,2\n3,4\n',
        'sound/beep.wav': _wav(seed),
        'model/weights.bin': bytes(range(256)) * 4,
        'icons/logo.svg': SVG_LOGO,
    }


def log_rich_run(client, experiment_id: str, name: str, salt: int = 0, start_ms: int = START_MS,
                 steps: int = 30) -> Expected:
    from mlflow.entities import Metric, Param

    experiment = client.get_experiment(experiment_id).name
    description = f'Run {name}: a **description** with unicode ✓ (salt {salt})'
    tags = {'team': 'vision', 'stage': f's{salt}', 'reviewed': '', 'summary': LONG_TAG_VALUE,
            'mlflow.note.content': description, 'mlflow.user': 'tester'}
    aim_tags = ['team=vision', f'stage=s{salt}', 'reviewed']  # 'summary=…' is too long for an Aim tag
    params = {'lr': str(0.001 * (salt + 1)), 'optimizer': 'adam', 'layers.hidden': '64', 'batch/size': '32'}
    run = client.create_run(experiment_id, start_time=start_ms, tags=tags, run_name=name)
    run_id = run.info.run_id
    metrics: Dict[str, List[Tuple[int, float, int]]] = {}
    batch = []
    for key in ('loss', 'acc', 'val/loss'):
        points = [(step, metric_value(key, step, salt), start_ms + 1000 * step + 7) for step in range(steps)]
        metrics[key] = points
        batch += [Metric(key, value, ts, step) for step, value, ts in points]
    # step 5 of 'loss' logged again, later: the later point must win
    again = (5, -123.25, start_ms + 1000 * steps + 500)
    metrics['loss'].append(again)
    batch.append(Metric('loss', again[1], again[2], again[0]))
    client.log_batch(run_id, metrics=batch, params=[Param(k, v) for k, v in params.items()])
    files = rich_artifacts(salt)
    with tempfile.TemporaryDirectory(prefix='runferry-sample-') as tmp:
        for path, data in files.items():
            local = os.path.join(tmp, path)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, 'wb') as out:
                out.write(data)
        client.log_artifacts(run_id, tmp)
    end_ms = start_ms + 1000 * steps + 1000
    client.set_terminated(run_id, 'FINISHED', end_time=end_ms)
    from connectors.mlflow_source import artifact_kind

    artifacts = {p: (artifact_kind(p), d) for p, d in files.items() if artifact_kind(p)}
    skipped = [p for p in files if p not in artifacts]
    return {run_id: _expected(client.get_run(run_id), experiment, params, tags, description,
                              {k: _dedupe(v) for k, v in metrics.items()}, artifacts, skipped, aim_tags)}


def log_many_runs(client, experiment_id: str, count: int, start_ms: int = START_MS, prefix: str = 'run',
                  steps: int = 3) -> Expected:
    from mlflow.entities import Metric, Param, RunTag

    experiment = client.get_experiment(experiment_id).name
    out: Expected = {}
    for i in range(count):
        name = f'{prefix}-{i:05d}'
        begin = start_ms + 10_000 * i
        run = client.create_run(experiment_id, start_time=begin, run_name=name)
        points = [(step, metric_value('loss', step, i), begin + step) for step in range(steps)]
        params = {'index': str(i), 'seed': str(i * 7 % 13)}
        tags = {'shard': str(i % 4)}
        client.log_batch(run.info.run_id, metrics=[Metric('loss', v, ts, s) for s, v, ts in points],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        out[run.info.run_id] = _expected(run, experiment, params, tags, None, {'loss': points},
                                         aim_tags=[f'shard={i % 4}'])
    return out


def log_long_metric(client, experiment_id: str, name: str, points: int, key: str = 'long',
                    start_ms: int = START_MS) -> Expected:
    """A run with one metric of ``points`` points (steps 0.., one timestamp a millisecond)."""
    from mlflow.entities import Metric

    experiment = client.get_experiment(experiment_id).name
    run = client.create_run(experiment_id, start_time=start_ms, run_name=name)
    history = [(step, metric_value(key, step), start_ms + step) for step in range(points)]
    for first in range(0, points, BATCH):
        client.log_batch(run.info.run_id, metrics=[Metric(key, v, ts, s) for s, v, ts in history[first:first + BATCH]])
    return {run.info.run_id: _expected(run, experiment, {}, {}, None, {key: history})}


# ------------------------------------------------------------------- a store filled as MLflow 3 users fill it

IMAGE_KEY = 'samples/val'  # a key with a slash: MLflow writes it '~' in the file name
IMAGE_STEPS = (0, 1, 2)


def stepped_image(step: int):
    """The image logged at ``step``: 6 x 4 pixels, a color of its own, one yellow pixel that moves."""
    import numpy as np

    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[:, :] = (40 * step % 256, 100, (200 + 25 * step) % 256)
    pixels[1, step] = (255, 255, 0)
    return pixels


def log_filled_store(uri: str, root: str, start_ms: int = START_MS) -> Dict[str, Any]:
    """A SQLite store filled through MLflow's fluent API as a user of MLflow 3 fills one:

    * experiment ``tuning``: ``mlflow.sklearn.autolog()`` around a ``GridSearchCV`` of 3 candidates, i.e.
      a parent run ``search-parent`` and 3 child runs that carry ``mlflow.parentRunId``;
    * experiment ``vision``: a run ``images`` with ``log_image(key=IMAGE_KEY, step=0..2)`` at given
      timestamps, an unstepped ``log_image(artifact_file=...)``, a dataset logged with ``log_input`` and a
      model logged with ``mlflow.sklearn.log_model`` (with params and a metric); and a run ``gone``,
      deleted.

    Returns what was logged: ``{'experiments': {name: id}, 'parent': id, 'children': [ids], 'images': id,
    'deleted': id, 'image_times': {step: ms}, 'image_paths': {step: path}, 'plain_image': path,
    'model_id': id}``."""
    import logging
    import warnings

    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    logging.getLogger('mlflow').setLevel(logging.ERROR)
    warnings.filterwarnings('ignore')
    mlflow.set_tracking_uri(uri)
    tuning = mlflow.create_experiment('tuning', artifact_location=f'file://{root}/artifacts-tuning')
    vision = mlflow.create_experiment('vision', artifact_location=f'file://{root}/artifacts-vision')
    features = np.random.RandomState(0).rand(40, 3)
    labels = (features[:, 0] > 0.5).astype(int)

    mlflow.set_experiment(experiment_id=tuning)
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, log_post_training_metrics=False,
                           max_tuning_runs=None, silent=True)
    with mlflow.start_run(run_name='search-parent') as parent:
        GridSearchCV(LogisticRegression(), {'C': [0.1, 1.0, 10.0]}, cv=2).fit(features, labels)
    mlflow.sklearn.autolog(disable=True)
    client = mlflow.MlflowClient(uri)
    children = [run.info.run_id for run in client.search_runs(
        [tuning], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")]

    mlflow.set_experiment(experiment_id=vision)
    image_times = {step: start_ms + 1000 * step + 17 for step in IMAGE_STEPS}
    with mlflow.start_run(run_name='images') as images:
        for step in IMAGE_STEPS:
            mlflow.log_image(stepped_image(step), key=IMAGE_KEY, step=step, timestamp=image_times[step])
        mlflow.log_image(stepped_image(5), artifact_file='plots/plain.png')
        dataset = mlflow.data.from_numpy(features, targets=labels, source='s3://bucket/train.npz', name='train')
        mlflow.log_input(dataset, context='training')
        model = LogisticRegression(C=1.0).fit(features, labels)
        info = mlflow.sklearn.log_model(model, name='classifier', params={'C': '1.0'},
                                        pip_requirements=['scikit-learn'], serialization_format='cloudpickle')
        mlflow.log_metric('accuracy', 0.875, model_id=info.model_id)
    with mlflow.start_run(run_name='gone') as gone:
        mlflow.log_metric('x', 1.0)
    client.delete_run(gone.info.run_id)
    image_paths = {}
    for artifact in client.list_artifacts(images.info.run_id, 'images'):
        if artifact.path.endswith('.png'):
            step = int(artifact.path.split('+step+')[1].split('+')[0])
            image_paths[step] = artifact.path
    return {'experiments': {'tuning': tuning, 'vision': vision}, 'parent': parent.info.run_id,
            'children': children, 'images': images.info.run_id, 'deleted': gone.info.run_id,
            'image_times': image_times, 'image_paths': image_paths, 'plain_image': 'plots/plain.png',
            'model_id': info.model_id}
