"""TensorBoard logdirs into MLflow (``WriteToMlflow``, ``python -m pipelines.tf_to_mlflow``), read back with
``MlflowClient`` and compared with what the writers wrote and with TensorBoard's own ``EventAccumulator``.

The logdir: tensorboardX's and TF2's every plugin (``samples.tensorboard_plugins``), PyTorch's
``SummaryWriter`` (scalars in context directories, histograms, hparams as a sub-run; and a run with
images, text and histograms in a ``train`` context), tensorboardX contexts, and a run with a tag MLflow
refuses (too long) beside one it renames (``#``)."""
from __future__ import annotations

import glob
import json
import math
import os
import re
import subprocess
import sys
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
import pytest

from connectors.mlflow_names import RENAMED_TAG, SOURCE_TAG
from connectors.mlflow_source import stepped_image_part

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG_TAG = 'x' * 260  # MLflow keys hold 250 characters: a dead letter
ODD_TAG = 'acc#top1'  # '#' is refused in a key: renamed acc_top1
EXPERIMENT = 'tb-import'


def _write_torch_media(directory: str) -> None:
    """PyTorch's SummaryWriter in a context directory: scalars, an image, a text, a histogram per step."""
    from torch.utils.tensorboard import SummaryWriter

    from samples.tensorboard_plugins import sample_image

    writer = SummaryWriter(os.path.join(directory, 'train'), flush_secs=3600)
    for step in range(3):
        writer.add_scalar('loss', 1.0 / (step + 1), step)
        writer.add_image('input', sample_image(step), step, dataformats='HWC')
        writer.add_text('log', f'step {step} done', step)
        writer.add_histogram('w', np.random.default_rng(step).normal(size=100), step)
    writer.close()


def _write_odd_run(directory: str, steps: range) -> None:
    """Scalars under tags as written, by TensorBoard's own event writer (tensorboardX would clean the tags)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(directory, flush_secs=3600, filename_suffix=f'.{steps.start}')
    for step in steps:
        values = [summary_pb2.Summary.Value(tag=tag, simple_value=value)
                  for tag, value in (('loss', 0.5 / (step + 1)), (ODD_TAG, step / 10), (LONG_TAG, 1.0))]
        writer.add_event(event_pb2.Event(wall_time=1_700_050_000.0 + step, step=step,
                                         summary=summary_pb2.Summary(value=values)))
    writer.close()


@pytest.fixture
def mixed_logdir(tmp_path):
    """The logdir (fresh per test: tests append to it) and the plugin writers' logs by run."""
    from samples.tensorboard_frameworks import write_tbx_contexts, write_torch_run
    from samples.tensorboard_plugins import write_tbx_plugins, write_tf2_plugins

    root = str(tmp_path / EXPERIMENT)
    logs = {'plugins_tbx': write_tbx_plugins(os.path.join(root, 'plugins_tbx')),
            'plugins_tf2': write_tf2_plugins(os.path.join(root, 'plugins_tf2'))}
    write_torch_run(os.path.join(root, 'torch_run'))
    _write_torch_media(os.path.join(root, 'torch_media'))
    write_tbx_contexts(os.path.join(root, 'tbx_run'))
    _write_odd_run(os.path.join(root, 'odd_run'), range(4))
    return root, logs


# ---------------------------------------------------------------------------------------- expected

def _event_dirs(run_dir: str):
    """(context or None, directory) of every directory below ``run_dir`` holding event files."""
    for directory, _, files in sorted(os.walk(run_dir)):
        if any('tfevents' in name for name in files):
            rel = os.path.relpath(directory, run_dir)
            yield (None if rel == '.' else rel), directory


def _key(context, tag: str) -> str:
    return f'{context}/{tag}' if context else tag


def expected_from_files(root: str) -> Dict[str, Dict[str, Any]]:
    """What TensorBoard's EventAccumulator reads, per run: metric points by key, the (key, step,
    timestamp) of its legacy images, the (step, timestamp) of its histograms and texts, and the run's span."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for run in sorted(os.listdir(root)):
        metrics: Dict[str, List[Tuple[int, int, float]]] = {}
        images: Set[Tuple[str, int, int]] = set()
        histograms: Dict[str, List[Tuple[int, int]]] = {}
        texts: Dict[str, List[Tuple[int, int]]] = {}
        for context, directory in _event_dirs(os.path.join(root, run)):
            ea = EventAccumulator(directory, size_guidance={'scalars': 0, 'images': 0, 'histograms': 0, 'tensors': 0,
                                                            'audio': 0})
            ea.Reload()
            tags = ea.Tags()
            for tag in tags['scalars']:
                by_step = {e.step: (e.step, round(e.wall_time * 1000), e.value) for e in ea.Scalars(tag)}
                metrics[_key(context, tag)] = sorted(by_step.values())
            for tag in tags['images']:
                images |= {(_key(context, tag), e.step, round(e.wall_time * 1000)) for e in ea.Images(tag)}
            for tag in tags['histograms']:
                histograms[_key(context, tag)] = sorted((e.step, round(e.wall_time * 1000)) for e in ea.Histograms(tag))
            for tag in tags['tensors']:
                plugin = ea.SummaryMetadata(tag).plugin_data.plugin_name
                if plugin == 'text':
                    texts[_key(context, tag)] = sorted((e.step, round(e.wall_time * 1000)) for e in ea.Tensors(tag))
        runs[run] = {'metrics': metrics, 'images': images, 'histograms': histograms, 'texts': texts}
    return runs


# ----------------------------------------------------------------------------------------- read back

def _history_value(value: float):
    return 'nan' if math.isnan(value) else value


def read_store(uri: str, experiment: str, scratch: str) -> Dict[str, Dict[str, Any]]:
    """Every run of ``experiment`` as MLflow gives it back, artifacts downloaded into ``scratch``."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f'no experiment {experiment!r}'
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    result = {}
    for run in runs:
        name = run.info.run_name
        assert name not in result, f'two MLflow runs named {name!r}: a re-run made a second run'
        metrics = {key: sorted((m.step, m.timestamp, _history_value(m.value))
                               for m in client.get_metric_history(run.info.run_id, key))
                   for key in run.data.metrics}
        local = client.download_artifacts(run.info.run_id, '', os.path.join(scratch, run.info.run_id))
        files = {os.path.relpath(os.path.join(d, f), local).replace(os.sep, '/'): os.path.join(d, f)
                 for d, _, names in os.walk(local) for f in names}
        result[name] = {'info': run.info, 'params': dict(run.data.params), 'tags': dict(run.data.tags),
                        'metrics': metrics, 'files': files,
                        'latest': {k: _history_value(v) for k, v in run.data.metrics.items()}}
    return result


def stepped_images(files: Dict[str, str]) -> Dict[Tuple[str, int, int], str]:
    """(key, step, timestamp) → local PNG of MLflow's stepped images; each has its webp thumbnail."""
    images, thumbnails = {}, set()
    for path, local in files.items():
        part = stepped_image_part(path)
        if part is None:
            continue
        if part.part == 'image':
            assert (part.key, part.step, part.timestamp) not in images, f'image written twice: {path}'
            images[(part.key, part.step, part.timestamp)] = local
        elif part.part == 'thumbnail':
            thumbnails.add((part.key, part.step, part.timestamp))
    assert thumbnails == set(images), 'every stepped image has its thumbnail (what MLflow UI shows)'
    return images


def _pixels(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def check_store(uri: str, root: str, logs, scratch: str) -> Dict[str, Dict[str, Any]]:
    """The store holds exactly the logdir: every run, name, time, param, metric point, image step and
    artifact. Returns what it read."""
    expected = expected_from_files(root)
    actual = read_store(uri, EXPERIMENT, scratch)
    assert set(actual) == set(expected)
    for name, want in expected.items():
        got = actual[name]
        info = got['info']
        assert info.status == 'FINISHED'
        assert got['tags'][SOURCE_TAG].startswith('tensorboard:') and got['tags'][SOURCE_TAG].endswith('/' + name)
        metric_want = {k: v for k, v in want['metrics'].items() if k != LONG_TAG}
        if name == 'odd_run':
            metric_want['acc_top1'] = metric_want.pop(ODD_TAG)
            assert json.loads(got['tags'][RENAMED_TAG]) == {ODD_TAG: 'acc_top1'}
        assert got['metrics'] == metric_want, name
        # latest_metrics (what MLflow's run pages and search show): each key's point greatest by (step, time, value)
        assert got['latest'] == {k: max(points, key=lambda p: (p[0], p[1], p[2] if p[2] != 'nan' else 0.0))[2]
                                 for k, points in got['metrics'].items()}, name
        images = stepped_images(got['files'])
        assert want['images'] <= set(images), name
        for key, steps in want['histograms'].items():
            document = json.load(open(got['files'][f'histograms/{key}.json']))
            assert [(s['step'], s['timestamp']) for s in document['steps']] == steps
            assert all(len(s['edges']) == len(s['counts']) + 1 for s in document['steps'])
        for key, steps in want['texts'].items():
            assert {f'text/{key}/step_{step}.txt' for step, _ in steps} <= set(got['files']), name
        times = [t for points in want['metrics'].values() for _, t, _ in points]
        times += [t for _, _, t in want['images']] + [t for steps in want['histograms'].values() for _, t in steps]
        times += [t for steps in want['texts'].values() for _, t in steps]
        if times and name not in logs:  # runs of only the kinds above: the span is theirs (plugin runs: below)
            assert info.start_time == min(times) and info.end_time == max(times), name
    for name, log in logs.items():
        _check_plugin_run(actual[name], log)
    return actual


def _check_plugin_run(got: Dict[str, Any], log) -> None:
    """A plugin run against what its writer says it wrote: exact pixels, edges, counts, text, audio bytes."""
    from transforms.plugins import render_text

    images = stepped_images(got['files'])
    times = []
    for (kind, tag, step), (value, wall_time) in log.points.items():
        timestamp = round(wall_time * 1000)
        times.append(timestamp)
        if kind == 'image':
            for index, (pixels, _) in enumerate(value):
                key = tag if index == 0 else f'{tag}/{index}'
                np.testing.assert_array_equal(_pixels(images[(key, step, timestamp)]), pixels)
        elif kind == 'distribution':
            path = got['files'][f'histograms/{tag}.json']
            steps = {s['step']: s for s in json.load(open(path))['steps']}
            assert (steps[step]['edges'], steps[step]['counts'], steps[step]['timestamp']) == \
                (list(value[0]), list(value[1]), timestamp)
        elif kind == 'text':
            text = value if isinstance(value, str) else render_text(value)
            assert open(got['files'][f'text/{tag}/step_{step}.txt'], encoding='utf-8').read() == text
        elif kind == 'audio':
            for index, (clip, _) in enumerate(value):
                suffix = '' if index == 0 else f'_{index}'
                assert open(got['files'][f'audio/{tag}/step_{step}{suffix}.wav'], 'rb').read() == clip
    params = {k: str(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
              for k, v in log.hparams.items()}
    assert got['params'] == params
    assert json.load(open(got['files']['tensorboard/hparams_config.json'])) == log.hparams_config
    assert got['info'].start_time <= min(times) and got['info'].end_time >= max(times)


def read_skipped(path: str) -> List[Dict[str, Any]]:
    with open(path) as stream:
        return [json.loads(line) for line in stream if line.strip()]


# --------------------------------------------------------------------------------------- the command

def tf_to_mlflow(tmp_path, *args, timeout=600, workers=2):
    """``python -m pipelines.tf_to_mlflow ARGS`` in a subprocess, in a scratch working directory (MLflow's
    SQL stores put a new experiment's artifacts in ./mlruns), 2 DirectRunner worker processes unless
    ``workers=1``: then the launcher's own process, as for any logdir of under 100 runs by default. Two
    workers about doubled a conversion's time here (the kill test's logdir into SQLite: 30 s, against
    14 s in one process); conversions that check no more than one process does take one."""
    cwd = tmp_path / 'cwd'
    cwd.mkdir(exist_ok=True)
    argv = [sys.executable, '-m', 'pipelines.tf_to_mlflow', *args, '--skipped', str(tmp_path / 'skipped.jsonl')]
    if workers > 1:
        argv += ['--direct_num_workers', str(workers), '--direct_running_mode', 'multi_processing']
    env = {**os.environ, 'PYTHONPATH': ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')}
    return subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)


def _metric_rows(actual) -> int:
    return sum(len(points) for run in actual.values() for points in run['metrics'].values())


@pytest.mark.parametrize('store', ['sqlite', 'postgresql', 'http'])
def test_tf_to_mlflow(store, mixed_logdir, tmp_path, request, monkeypatch):
    """Converted into each kind of store and read back whole; the dead letter of the refused key; (SQLite,
    HTTP) a re-run adds nothing; (SQLite) a re-run after appending events adds exactly the new points.
    (PostgreSQL) the artifacts go to S3 (moto's server), as a production SQL store keeps them. The first
    conversion into SQLite runs on two worker processes (every kind of value written from workers); the
    others in one process (the kill test below has SQLite written by two workers at once again)."""
    root, logs = mixed_logdir
    artifacts = ['--artifact-location', str(tmp_path / 'artifacts')]
    bucket = None
    if store == 'sqlite':
        uri = f'sqlite:///{tmp_path}/mlflow.db'
    elif store == 'postgresql':
        server = request.getfixturevalue('postgres_server')
        uri = server.url
        bucket = _s3_bucket(request, monkeypatch)
        artifacts = ['--artifact-location', f's3://{bucket}/artifacts']
    else:
        server = request.getfixturevalue('mlflow_http')  # the session's: experiment tb-import is ours
        uri, artifacts = server.url, []

    done = tf_to_mlflow(tmp_path, '--logdir', root, '--tracking-uri', uri, *artifacts,
                        workers=2 if store == 'sqlite' else 1)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'MLflow has no histogram type' in done.stdout + done.stderr
    assert 'already in MLflow' not in done.stdout + done.stderr
    first = check_store(uri, root, logs, str(tmp_path / 'read1'))
    refused = [s for s in read_skipped(str(tmp_path / 'skipped.jsonl')) if LONG_TAG in s.get('detail', '')]
    assert len(refused) == 1 and refused[0]['count'] == 4 and 'longer than MLflow allows' in refused[0]['reason']
    if store == 'postgresql':  # its re-run takes SQLite's path (the bulk SQL one), checked there: time saved
        stored = request.getfixturevalue('s3fs_client').find(f'{bucket}/artifacts')
        assert any('/histograms/' in path for path in stored) and any('/images/' in path for path in stored)
        return

    again = tf_to_mlflow(tmp_path, '--logdir', root, '--tracking-uri', uri, *artifacts, workers=1)
    assert again.returncode == 0, again.stderr[-3000:]
    report = again.stdout + again.stderr
    written = int(re.search(r'points written\s+([\d,]+)', report).group(1).replace(',', ''))
    present = int(re.search(r'([\d,]+) of the points written were already in MLflow', report).group(1).replace(',', ''))
    assert written == present > 0  # nothing sent: every point was there
    second = check_store(uri, root, logs, str(tmp_path / 'read2'))
    assert _metric_rows(second) == _metric_rows(first)
    assert {n: sorted(r['files']) for n, r in second.items()} == {n: sorted(r['files']) for n, r in first.items()}
    assert {n: r['info'].run_id for n, r in second.items()} == {n: r['info'].run_id for n, r in first.items()}
    if store != 'sqlite':
        return

    _write_odd_run(os.path.join(root, 'odd_run'), range(4, 7))  # a new event file: 3 more steps
    appended = tf_to_mlflow(tmp_path, '--logdir', root, '--tracking-uri', uri, *artifacts, workers=1)
    assert appended.returncode == 0, appended.stderr[-3000:]
    third = check_store(uri, root, logs, str(tmp_path / 'read3'))
    assert _metric_rows(third) == _metric_rows(first) + 2 * 3  # loss and acc_top1; the long tag refused again
    assert third['odd_run']['info'].run_id == first['odd_run']['info'].run_id


def _s3_bucket(request, monkeypatch) -> str:
    """A new bucket in moto's S3 server, which MLflow's S3 artifact repository reaches (here and in the
    command's processes) through ``MLFLOW_S3_ENDPOINT_URL``."""
    import uuid

    from tests import servers

    s3_server = request.getfixturevalue('s3_server')
    for key, value in {**servers.S3_ENV, 'MLFLOW_S3_ENDPOINT_URL': s3_server.url}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv('AWS_ENDPOINT_URL', raising=False)  # MLflow must find S3 by its own variable
    bucket = f'tf-to-mlflow-{uuid.uuid4().hex[:12]}'
    request.getfixturevalue('s3fs_client').mkdir(bucket)
    return bucket


def test_write_to_mlflow_transform(mixed_logdir, tmp_path):
    """``WriteToMlflow`` under ``TestPipeline``: the runs the TensorBoard reader makes in, MLflow's read
    back out; a second write of the same runs adds nothing and reports the points as present; after
    artifacts were cut short (as a kill during a file store's copy leaves them), a third write mends
    exactly those and counts them as written."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from connectors.event_files import EventFileSource
    from transforms.classify import classify
    from transforms.mlflow_write import WriteToMlflow
    from transforms.tensorboard import tensorboard_run_data

    root, logs = mixed_logdir
    uri = f'sqlite:///{tmp_path}/mlflow.db'
    source = EventFileSource(root)
    plan = classify(source.list_event_files())
    by_run: Dict[str, list] = {}
    for assignment in plan.assignments():
        by_run.setdefault(assignment.run, []).append(assignment)

    def write(label: str, sent_points: Optional[int]):
        runs = [tensorboard_run_data(source, EXPERIMENT, run, assignments) for run, assignments in by_run.items()]
        with TestPipeline() as p:
            out = p | f'Create{label}' >> beam.Create(runs) | f'Write{label}' >> WriteToMlflow(uri, str(tmp_path / 'art'))
            assert_that(out['written'] | beam.Map(lambda r: (r['name'], r['created'])),
                        equal_to([(name, label == 'first') for name in by_run]), label=f'Written{label}')
            assert_that(out['skipped'] | beam.Filter(lambda s: LONG_TAG in (s.detail or '')) | beam.Map(lambda s: s.count),
                        equal_to([4]), label=f'Refused{label}')
            # the first time nothing is present; later, points sent are those the store did not hold whole
            sent = out['written'] | beam.Map(lambda r: r['present'] if sent_points is None else
                                             sum(r['points'].values()) - r['present'])
            assert_that(sent | beam.CombineGlobally(sum), equal_to([sent_points or 0]), label=f'Sent{label}')
        return p.result

    write('first', None)
    first = check_store(uri, root, logs, str(tmp_path / 'read1'))
    write('again', 0)
    second = check_store(uri, root, logs, str(tmp_path / 'read2'))
    assert _metric_rows(second) == _metric_rows(first)
    write('mended', _cut_artifacts_short(uri, 'plugins_tbx'))
    check_store(uri, root, logs, str(tmp_path / 'read3'))


def _cut_artifacts_short(uri: str, run_name: str) -> int:
    """Cut one text file, one audio file and one histogram file of the run short, and one image's PNG
    with its thumbnail gone (a write stopped during the PNG); returns how many points that takes from the
    store (a histogram file holds all of its key's steps)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run, = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                              filter_string=f"attributes.run_name = '{run_name}'")
    artifacts = run.info.artifact_uri[len('file://'):] if run.info.artifact_uri.startswith('file://') \
        else run.info.artifact_uri

    def first(pattern: str) -> str:
        found = sorted(glob.glob(os.path.join(artifacts, pattern), recursive=True))
        assert found, pattern
        return found[0]

    def halve(path: str) -> None:
        with open(path, 'r+b') as stream:
            stream.truncate(os.path.getsize(path) // 2)

    histogram = first('histograms/**/*.json')
    with open(histogram) as stream:
        cut = len(json.load(stream)['steps'])
    thumbnail = first('images/*+compressed.webp')
    os.unlink(thumbnail)
    for path in (first('text/**/step_*.txt'), first('audio/**/step_*.wav'), histogram,
                 thumbnail[:-len('+compressed.webp')] + '.png'):
        halve(path)
    return cut + 3


# ------------------------------------------------------------------------------------------------ faults

def _metric_state(uri: str, experiment: str) -> Dict[str, Any]:
    """Per run name: times, status, params and every metric's full history, as MLflow gives them back."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    state = {}
    for run in client.search_runs([found.experiment_id], max_results=1000):
        assert run.info.run_name not in state, f'a second run {run.info.run_name!r}'
        state[run.info.run_name] = (run.info.start_time, run.info.end_time, run.info.status, dict(run.data.params),
                                    {k: sorted((m.step, m.timestamp, m.value)
                                               for m in client.get_metric_history(run.info.run_id, k))
                                     for k in run.data.metrics})
    return state


def _many_runs(root: str, runs: int, steps: int) -> None:
    from samples.tensorboard_logs import write_tbx

    for i in range(runs):
        write_tbx(os.path.join(root, f'run_{i:02d}', 'train'), ('loss', 'acc', 'lr'), steps, salt=i,
                  start_time=1_700_000_000.0 + 10_000 * i)
        write_tbx(os.path.join(root, f'run_{i:02d}', 'validate'), ('loss',), steps // 5, salt=i,
                  start_time=1_700_000_000.0 + 10_000 * i)


def test_kill_9_then_rerun_equals_an_uninterrupted_conversion(tmp_path):
    """SIGKILL once the store holds runs, then the same command again: the store ends as an uninterrupted
    conversion's (no second run, no point twice or missing, every run FINISHED). The uninterrupted
    conversion runs in one process: the killed one and its re-run have two workers."""
    import signal
    import sqlite3
    import time

    root = str(tmp_path / 'kill')
    _many_runs(root, 4, 7000)  # 22,400 points a run: two bulk transactions each; two runs a worker
    reference = f'sqlite:///{tmp_path}/reference.db'
    done = tf_to_mlflow(tmp_path, '--logdir', root, '--tracking-uri', reference, workers=1)
    assert done.returncode == 0, done.stderr[-3000:]

    killed_db = tmp_path / 'killed.db'
    cwd = tmp_path / 'cwd'
    argv = [sys.executable, '-m', 'pipelines.tf_to_mlflow', '--logdir', root, '--tracking-uri',
            f'sqlite:///{killed_db}', '--skipped', str(tmp_path / 'killed.jsonl'),
            '--direct_num_workers', '2', '--direct_running_mode', 'multi_processing']
    env = {**os.environ, 'PYTHONPATH': ROOT}
    process = subprocess.Popen(argv, cwd=str(cwd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline, points = time.monotonic() + 300, 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with sqlite3.connect(f'file:{killed_db}?mode=ro', uri=True, timeout=1) as db:
                points = db.execute('select count(*) from metrics').fetchone()[0]
        except sqlite3.Error:
            points = 0  # not created, or its tables not yet
        if points:
            break
        time.sleep(0.1)
    assert process.poll() is None, 'the conversion ended before it could be killed: make the logdir bigger'
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert points > 0

    again = tf_to_mlflow(tmp_path, '--logdir', root, '--tracking-uri', f'sqlite:///{killed_db}')
    assert again.returncode == 0, again.stderr[-3000:]
    assert _metric_state(f'sqlite:///{killed_db}', 'kill') == _metric_state(reference, 'kill')


def test_server_dropping_connections_is_waited_out_or_named(mlflow_http, tmp_path, monkeypatch, capsys):
    """An ``mlflow server`` behind a proxy that goes down twice mid-conversion (a response cut short,
    refused connections for 1.5 s): every run arrives whole, once. Down for good: one line naming the
    server (masked), exit 2, before any work. The session's ``mlflow server`` (its experiment ``flaky`` is
    this test's alone) behind a proxy of this test's own."""
    from pipelines import tf_to_mlflow as command
    from tests.flaky_proxy import FlakyProxy

    root = str(tmp_path / 'flaky')
    _many_runs(root, 4, 600)
    for key, value in {'RUNFERRY_RETRY_ATTEMPTS': '6', 'RUNFERRY_RETRY_INITIAL_SECONDS': '0.2',
                       'RUNFERRY_RETRY_MAX_SECONDS': '30', 'MLFLOW_HTTP_REQUEST_MAX_RETRIES': '0'}.items():
        monkeypatch.setenv(key, value)
    with FlakyProxy(mlflow_http.port) as proxy:
        reference = f'sqlite:///{tmp_path}/reference.db'
        monkeypatch.chdir(tmp_path)
        assert command.run(['--logdir', root, '--tracking-uri', reference]) == 0
        proxy.cut_after(3_000, 1.5)  # once the writes are under way (answers to writes are small)
        outages = proxy.outages
        assert command.run(['--logdir', root, '--tracking-uri', proxy.url,
                            '--skipped', str(tmp_path / 'skipped.jsonl')]) == 0
        assert proxy.outages == outages + 1
        assert _metric_state(proxy.url, 'flaky') == _metric_state(reference, 'flaky')

        proxy.down()
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            command.run(['--logdir', root, '--tracking-uri', f'http://user:hunter2@127.0.0.1:{proxy.port}'])
        assert exit_info.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith('tf_to_mlflow: error: --tracking-uri http://') and 'unreachable after' in line, line
        assert 'hunter2' not in line
