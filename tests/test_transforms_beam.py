"""The middle tier: each Read and Write transform alone under Beam's ``TestPipeline``, checked with
``assert_that`` (no subprocess, no command line). Inputs are written by the real writers (tensorboardX,
MlflowClient); what ``WriteToAim`` wrote is read back through Aim's SDK."""
from __future__ import annotations

import json
import os

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # (as: not a pytest class)
from apache_beam.testing.util import assert_that, equal_to

from connectors.event_files import EventFileSource, is_event_file
from runmodel import METRIC, RunData, RunSpec, Series, Skip
from samples.tensorboard_logs import write_tbx
from tests.readback import read_metrics, read_runs
from transforms.tensorboard import ReadTensorBoard


def drained(data: RunData):
    """A run as a comparable value: (name, experiment, {(metric, context): [(step, value, time)]},
    [(reason, kind) of the dead letters met while reading it])."""
    points, skips = {}, []
    for item in data.items():
        if isinstance(item, Skip):
            skips.append((item.reason.split(' (')[0], item.kind))
            continue
        for series in item:
            key = (series.name, json.dumps(series.context, sort_keys=True))
            points.setdefault(key, []).extend(
                (step, float(value), round(wall, 3)) for step, value, wall in zip(series.steps, series.values,
                                                                                  series.wall_times))
    return (data.spec.name, data.spec.experiment, sorted((k, sorted(v)) for k, v in points.items()), sorted(skips))


def written_points(written):
    """``samples.tensorboard_logs`` points → ``drained``'s form for one context."""
    by_tag = {}
    for (tag, step), (value, wall) in written.items():
        by_tag.setdefault(tag, []).append((step, value, round(wall, 3)))
    return {tag: sorted(points) for tag, points in by_tag.items()}


def test_read_tensorboard_gives_the_runs_written_and_dead_letters_for_what_it_cannot_read(tmp_path):
    root = str(tmp_path / 'logs')
    plain = write_tbx(os.path.join(root, 'plain'), ('loss', 'acc'), steps=6)
    train = write_tbx(os.path.join(root, 'split', 'train'), ('loss',), steps=4, salt=1)
    damaged = write_tbx(os.path.join(root, 'damaged'), ('loss',), steps=5, salt=2)
    (damaged_file,) = os.listdir(os.path.join(root, 'damaged'))
    path = os.path.join(root, 'damaged', damaged_file)
    os.truncate(path, os.path.getsize(path) - 3)  # a writer killed mid-record: its last point is lost
    del damaged[('loss', 4)]
    write_tbx(root, ('stray',), steps=2)  # an event file in the logdir itself belongs to no run
    source = EventFileSource(root)
    listing = [p for p in source.list_files() if is_event_file(p)]

    def expected_run(name, contexts, skips=()):
        series = sorted(((tag, json.dumps(context, sort_keys=True)), points)
                        for context, written in contexts for tag, points in written_points(written).items())
        return name, 'logs', series, sorted(skips)

    with BeamTestPipeline() as p:
        read = p | ReadTensorBoard(source, listing, 'logs')
        assert_that(read['runs'] | beam.Map(drained), equal_to([
            expected_run('plain', [({}, plain)]),
            expected_run('split', [({'entry': 'train'}, train)]),
            expected_run('damaged', [({}, damaged)], [('truncated record', 'record')]),
        ]), label='Runs')
        assert_that(read['skipped'] | beam.Map(lambda skip: (os.path.basename(os.path.dirname(skip.source)) or 'logs',
                                                             skip.reason, skip.kind)),
                    equal_to([('logs', 'unorganized event file (not in a run directory)', 'file')]), label='Skipped')


@pytest.fixture
def mlflow_store(tmp_path):
    """A small SQLite store filled by MlflowClient: two runs in one experiment. Returns (uri, {run id: run})."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = f'sqlite:///{tmp_path}/mlflow.db'
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment('beam', artifact_location=f'file://{tmp_path}/artifacts')
    runs = {}
    for index, name in enumerate(('first', 'second')):
        run = client.create_run(experiment, run_name=name, start_time=1_700_000_000_000 + index)
        metrics = [(step, float(step * (index + 1)) / 4, 1_700_000_000_000 + 1000 * step) for step in range(5)]
        client.log_batch(run.info.run_id, params=[Param('lr', str(0.1 * (index + 1)))],
                         metrics=[Metric('loss', value, millis, step) for step, value, millis in metrics])
        client.set_terminated(run.info.run_id, end_time=1_700_000_100_000)
        runs[run.info.run_id] = {'name': name, 'loss': [(s, v, round(m / 1000, 3)) for s, v, m in metrics],
                                 'params': {'lr': str(0.1 * (index + 1))}}
    return uri, runs


def mlflow_drained(data: RunData):
    name, experiment, series, skips = drained(data)
    return name, experiment, series, skips, data.spec.attributes.get('params')


def test_read_mlflow_gives_each_run_logged_and_a_dead_letter_for_a_run_it_cannot_read(mlflow_store):
    from pipelines.sources.mlflow import plan_store
    from transforms.mlflow import ReadMlflow

    uri, runs = mlflow_store
    store, plan = plan_store(uri, ['beam'])
    run_ids = [run_id for _, ids in plan for run_id in ids]
    assert sorted(run_ids) == sorted(runs)
    with BeamTestPipeline() as p:
        read = p | ReadMlflow(store, run_ids + ['0' * 32], {experiment.experiment_id: experiment.name
                                                             for experiment, _ in plan})
        assert_that(read['runs'] | beam.Map(mlflow_drained), equal_to([
            (run['name'], 'beam', [(('loss', '{}'), run['loss'])], [], run['params']) for run in runs.values()
        ]), label='Runs')
        assert_that(read['skipped'] | beam.Map(lambda skip: (skip.source, skip.reason.split(':')[0], skip.kind)),
                    equal_to([(f'mlflow run {"0" * 32}', 'run could not be read', 'run')]), label='Skipped')


def _series(name, context, points):
    series = Series(METRIC, name, context, source='memory')
    for position, (step, value, wall) in enumerate(points):
        series.append(step, wall, value, position)
    return series


def test_write_to_aim_writes_indexed_runs_that_aims_sdk_reads_back(tmp_path):
    from pipelines.destinations.aim import AimDestination

    repo = str(tmp_path / 'aim')
    destination = AimDestination(repo)
    destination.check()  # creates the repo, as a conversion does before its pipeline
    loss = [(step, step / 8, 1_700_000_000.0 + step) for step in range(7)]
    acc = [(step, 1 - step / 16, 1_700_000_000.5 + step) for step in range(3)]
    first = RunData(RunSpec(identity='beam:first', name='first', experiment='beam', attributes={'lr': 0.1}),
                    [_series('loss', {}, loss), _series('acc', {'entry': 'train'}, acc)])
    second = RunData(RunSpec(identity='beam:second', name='second', experiment='beam'), [_series('loss', {}, loss)])
    kept_out = Skip('memory second', 'unsupported plugin', 'point', count=2)
    with BeamTestPipeline() as p:
        written = p | beam.Create([first, (second, [kept_out])]) | destination.write()
        assert_that(written['written'] | beam.Map(lambda result: (result['name'], result['points'])),
                    equal_to([('first', {METRIC: 10}), ('second', {METRIC: 7})]), label='Written')
        assert_that(written['skipped'], equal_to([kept_out]), label='Skipped')
        # what travels to the index step: where each run's records are, not the records
        # (connectors.aim_kept_records: the index step's input does not grow with the runs' records)
        assert_that(written['written'] | beam.Map(lambda result: (
            'meta_records' in result, os.path.basename(result['kept'][0]).endswith('.records'))),
            equal_to([(False, True)] * 2), label='Kept')

    runs = read_runs(repo)  # listed at once: the index step ran
    assert os.listdir(os.path.join(repo, '.aim', 'runferry-index-records')) == []  # removed once indexed
    assert sorted(runs) == ['first', 'second']
    assert runs['first']['experiment'] == 'beam' and runs['first']['attributes']['lr'] == 0.1
    assert read_metrics(repo) == {
        ('first', '{}', 'loss'): loss, ('first', '{"entry": "train"}', 'acc'): acc, ('second', '{}', 'loss'): loss}
