"""Reading a SQL store many runs at a time (``MlflowSource.fetch_runs``) gives exactly what reading it run
by run through MLflow's client (``fetch_run``) gives: the same records and the same Aim runs, for a store
written at test time by MLflow itself with the awkward cases (a step logged twice, NaN and ±inf, many
keys, a run without metrics, a deleted run, a dataset and artifacts)."""
from __future__ import annotations

import math

import pytest

from connectors.mlflow_source import MlflowSource
from samples.mlflow_store import START_MS, log_many_runs, log_rich_run, metric_value, scratch_dir
from transforms.mlflow import mlflow_run_data

KEYS = 40  # one run logs this many metric keys
SMALL_BULK = 50  # points a bulk query at most, in these tests: several groups, the big run alone in one


def _log_awkward_runs(client, experiment_id: str) -> dict:
    """Runs whose histories are hard to get right; returns {name: run id}."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

    ids = {}
    run = client.create_run(experiment_id, start_time=START_MS, run_name='odd-values')
    values = [float('nan'), float('inf'), float('-inf'), 0.0, -0.0, 1e-300, 2.5]
    client.log_batch(run.info.run_id, metrics=(
        [Metric('odd', value, START_MS + step, step) for step, value in enumerate(values)]
        # step 1 again, later: the later point supersedes the +inf one
        + [Metric('odd', 7.0, START_MS + 100, 1), Metric('odd', float('nan'), START_MS + 101, 3)]))
    ids['odd-values'] = run.info.run_id

    run = client.create_run(experiment_id, start_time=START_MS + 1, run_name='many-keys')
    client.log_batch(run.info.run_id, metrics=[Metric(f'key/{k:02d}', metric_value(f'k{k}', s), START_MS + s, s)
                                               for k in range(KEYS) for s in range(3)])
    ids['many-keys'] = run.info.run_id

    run = client.create_run(experiment_id, start_time=START_MS + 2, run_name='no-metrics')
    client.log_batch(run.info.run_id, params=[Param('only', 'params')])
    dataset = Dataset(name='digits', digest='abc123', source_type='local', source='{"uri": "/data/digits"}',
                      schema='{"mlflow_colspec": []}', profile='{"num_rows": 10}')
    client.log_inputs(run.info.run_id, datasets=[DatasetInput(dataset, [InputTag('mlflow.data.context', 'training')])])
    client.set_terminated(run.info.run_id, 'FAILED', end_time=START_MS + 5)
    ids['no-metrics'] = run.info.run_id

    run = client.create_run(experiment_id, start_time=START_MS + 3, run_name='deleted')
    client.log_batch(run.info.run_id, metrics=[Metric('loss', 1.0, START_MS, 0)])
    client.delete_run(run.info.run_id)
    ids['deleted'] = run.info.run_id
    return ids


@pytest.fixture(scope='module')
def awkward_store():
    from mlflow import MlflowClient

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        first = client.create_experiment('first', artifact_location=f'file://{root}/artifacts')
        second = client.create_experiment('second', artifact_location=f'file://{root}/artifacts2')
        names = _log_awkward_runs(client, first)
        names.update({v['name']: k for k, v in log_many_runs(client, second, 4, steps=5).items()})
        names.update({v['name']: k for k, v in log_rich_run(client, second, 'rich', salt=1, steps=10).items()})
        yield uri, [first, second], names


def test_bulk_and_run_by_run_reads_are_the_same(awkward_store):
    uri, experiment_ids, names = awkward_store
    source = MlflowSource(uri, bulk_points=SMALL_BULK)
    assert source.reads_in_bulk()
    run_ids = sorted(names.values())
    bulk = list(source.fetch_runs(run_ids, experiment_ids))
    assert [run_id for run_id, _ in bulk] == run_ids  # one answer a run, in the order asked
    one_by_one = {run_id: source.fetch_run(run_id) for run_id in run_ids}
    for run_id, record in bulk:
        assert not isinstance(record, Exception), record
        # repr: NaN equals NaN there (and floats print exactly)
        assert repr(record) == repr(one_by_one[run_id]), run_id
        assert repr(mlflow_run_data(record, 'x')) == repr(mlflow_run_data(one_by_one[run_id], 'x')), run_id

    records = dict(bulk)
    odd = records[names['odd-values']].metrics['odd']
    assert [step for step, _, _ in odd] == [0, 1, 2, 3, 4, 5, 6, 1, 3]
    assert math.isnan(odd[0][1]) and math.isnan(odd[-1][1]) and odd[7][1] == 7.0
    assert odd[1][1] == 1.7976931348623157e308 and odd[2][1] == -1.7976931348623157e308  # as MLflow keeps ±inf
    assert len(records[names['many-keys']].metrics) == KEYS
    no_metrics = records[names['no-metrics']]
    assert no_metrics.metrics == {} and no_metrics.status == 'FAILED'
    assert [(d.name, d.context) for d in no_metrics.datasets] == [('digits', 'training')]
    assert records[names['deleted']].lifecycle_stage == 'deleted'
    assert records[names['rich']].artifacts and records[names['rich']].skipped_artifacts


def test_a_run_gone_since_listing_is_an_error_of_its_own(awkward_store):
    uri, experiment_ids, names = awkward_store
    source = MlflowSource(uri)
    gone = 'f' * 32
    found = dict(source.fetch_runs([names['run-00000'], gone, names['run-00001']], experiment_ids))
    assert isinstance(found[gone], LookupError) and gone in str(found[gone])
    assert found[names['run-00000']].run_name == 'run-00000' and found[names['run-00001']].run_name == 'run-00001'


def test_file_stores_are_read_run_by_run(tmp_path):
    from mlflow import MlflowClient

    uri = (tmp_path / 'mlruns').as_uri()
    source = MlflowSource(uri)
    client = source.client  # sets MLFLOW_ALLOW_FILE_STORE, which MLflow 3 needs to open one
    experiment_id = client.create_experiment('files')
    expected = log_many_runs(MlflowClient(uri), experiment_id, 2, steps=4)
    assert not source.reads_in_bulk()
    found = dict(source.fetch_runs(sorted(expected), [experiment_id]))
    assert {run_id: [p[:2] for p in record.metrics['loss']] for run_id, record in found.items()} == \
        {run_id: [p[:2] for p in want['metrics']['loss']] for run_id, want in expected.items()}


def test_run_batches_share_a_bulk_plan_among_workers_and_keep_other_stores_run_by_run():
    from transforms.mlflow import run_batches

    ids = [f'r{i}' for i in range(1052)]
    batches = run_batches(ids, bulk=True)
    assert [run_id for batch in batches for run_id in batch] == ids
    assert max(map(len, batches)) == 66 and len(batches) == 16  # at least 16 elements to share
    many = run_batches(ids * 10, bulk=True)
    assert max(map(len, many)) == 100 and len(many) == 106  # never more than 100 runs a read
    assert run_batches(ids[:5], bulk=True) == [[run_id] for run_id in ids[:5]]
    assert run_batches(ids[:40], bulk=False) == [[run_id] for run_id in ids[:40]]
    assert run_batches([], bulk=True) == []
