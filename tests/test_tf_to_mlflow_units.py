"""The pure parts of the MLflow destination: the key rule, the store checks, and the bulk SQL path against
MLflow's own ``log_batch`` on the same points."""
from __future__ import annotations

import math

import pytest

from connectors.mlflow_names import key_problem, mlflow_key


@pytest.mark.parametrize('name,context,image,key', [
    ('loss', {}, False, 'loss'),
    ('epoch_loss', {'entry': 'train'}, False, 'train/epoch_loss'),
    ('loss', {'entry': 'a/b'}, False, 'a/b/loss'),
    ('loss', {'subset': 'val', 'entry': 'x'}, False, 'x/val/loss'),  # values in the order of their keys
    ('acc#top1', {}, False, 'acc_top1'),
    ('lr: warmup', {}, False, 'lr: warmup'),  # colons and spaces MLflow takes in metric keys
    ('lr: warmup', {}, True, 'lr_ warmup'),  # not in image keys
    ('/a//b/', {}, False, 'a/b'),
    ('../x/./y', {}, False, '_/x/_/y'),
    ('', {}, False, '_'),
    ('héllo', {}, False, 'héllo'),
    ('héllo', {}, True, 'h_llo'),
])
def test_mlflow_key(name, context, image, key):
    assert mlflow_key(name, context, image=image) == key


def test_mlflow_accepts_every_key_the_rule_makes():
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name

    for name in ('acc#top1', '/a//b/', '../x/./y', 'a\nb', 'x' * 20 + '%$€', '..'):
        key = mlflow_key(name, {'entry': 'train'})
        _validate_metric_name(key)
        _validate_param_name(key)


def test_key_problem():
    assert key_problem('x' * 250) is None
    assert 'longer than MLflow allows' in key_problem('x' * 251)


def test_destination_store_problem(tmp_path):
    from pipelines.destinations.mlflow import destination_store_problem

    db = tmp_path / 'm.db'
    assert destination_store_problem(f'sqlite:///{db}') is None  # created by MLflow: fine
    assert 'no directory' in destination_store_problem(f'sqlite:///{tmp_path}/typo/m.db')
    assert 'names a directory' in destination_store_problem(f'sqlite:///{tmp_path}')
    text = tmp_path / 'notes.db'
    text.write_text('not a database')
    assert 'is not a SQLite database' in destination_store_problem(f'sqlite:///{text}')
    assert 'sqlite:///' in destination_store_problem(str(db))  # a database path without the scheme
    assert 'in-memory' in destination_store_problem('sqlite:///:memory:')
    assert destination_store_problem('http://127.0.0.1:5000') is None
    assert destination_store_problem('postgresql+psycopg://u:secret@db/mlflow') is None


def test_bulk_sql_path_writes_what_log_batch_writes(tmp_path):
    """The same points through ``connectors.mlflow_sql`` and through MLflow's ``log_batch``, in two runs of
    one SQLite store: the same history and the same ``latest_metrics`` (NaN, ±inf, a later step with a
    smaller value, ties on step broken by time, then by value), also when added in two batches."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from connectors.mlflow_sql import SqlMetricWriter

    client = MlflowClient(f'sqlite:///{tmp_path}/m.db')
    experiment = client.create_experiment('e', artifact_location=str(tmp_path / 'a'))
    bulk_run, reference = (client.create_run(experiment).info.run_id for _ in range(2))
    first = [('a', 1.0, 1000, 0), ('a', 0.5, 2000, 1), ('a', float('nan'), 1500, 1), ('b', float('inf'), 10, 5),
             ('b', -float('inf'), 20, 5), ('c', 3.0, 5, 2), ('c', 2.0, 5, 2)]
    second = [('a', 0.1, 900, 3), ('c', 1.0, 4, 1), ('d', float('nan'), 7, 0)]
    writer = SqlMetricWriter.for_client(client)
    assert writer is not None
    for batch in (first, second):
        writer.write(bulk_run, batch)
        client.log_batch(reference, metrics=[Metric(k, v, t, s) for k, v, t, s in batch], synchronous=True)

    def state(run_id):
        run = client.get_run(run_id)
        latest = {k: ('nan' if math.isnan(v) else v) for k, v in run.data.metrics.items()}
        history = {k: sorted((m.step, m.timestamp, 'nan' if math.isnan(m.value) else m.value)
                             for m in client.get_metric_history(run_id, k)) for k in run.data.metrics}
        return latest, history

    assert state(bulk_run) == state(reference)
    assert writer.history(bulk_run) == {k: set(v) for k, v in state(reference)[1].items()}
