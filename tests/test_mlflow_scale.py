"""mlflow_to_aim past a page of issue 4: an experiment of more runs than the page the source lists with,
converted end to end from a SQLite store and read back, every run and every point, through the Aim SDK. A
re-run adds nothing.

Issue 4's store held 1,050 runs, past MLflow's default page of 1,000 (``connectors.mlflow_source.PAGE_SIZE``,
where Aim's converter stops). Here the page is made small with the command's hidden ``--page-size`` flag
(the knob the source already reads): 51 runs over pages of 25 cross two page boundaries, as 1,001 runs over
pages of 1,000 cross one, in seconds instead of the minute and a half that logging and converting 1,001 runs
took. The paging code is the same whatever the page size.

The read-back uses the SDK calls that scale (one ``iter_runs`` for the runs, one ``query_metrics`` for
every metric of the experiment): reading 1,000 runs one ``Run`` at a time reopens the repo's RocksDB
containers per run and did not finish in 10 minutes.
"""
from __future__ import annotations

import json

import pytest

from pipelines import mlflow_to_aim
from pipelines.sources.mlflow import plan_store
from samples.mlflow_store import log_many_runs, scratch_dir

PAGE = 25  # runs a listing page (``--page-size``; MLflow's default is 1,000)
RUNS = 2 * PAGE + 1  # the last run is on a third page

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def store_past_a_page():
    from mlflow import MlflowClient

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        big = client.create_experiment('big', artifact_location=f'file://{root}/artifacts')
        yield uri, log_many_runs(client, big, RUNS, steps=3)


def test_every_run_past_the_first_page_is_planned(store_past_a_page, tmp_path):
    """The listing follows MLflow's pages: each of the runs on three pages becomes one Beam element, once."""
    uri, expected = store_past_a_page
    _, plan = plan_store(uri, ['big'], page_size=PAGE)
    assert [experiment.name for experiment, _ in plan] == ['big']
    run_ids = plan[0][1]
    assert len(run_ids) == len(set(run_ids)) == RUNS and set(run_ids) == set(expected)


def read_experiment(repo_path: str, experiment: str):
    """({mlflow run id: run props and attributes}, {mlflow run id: {metric: [(step, value, time)]}})."""
    from aim import Repo

    repo = Repo.from_path(repo_path)
    runs = {}
    for run in repo.iter_runs():
        run_id = run.get('mlflow_run_id')
        assert run_id not in runs, f'two Aim runs for {run_id}'
        runs[run_id] = {'name': run.name, 'experiment': run.experiment, 'params': run.get('params'),
                        'tags': run.get('tags'), 'creation_time': run.creation_time, 'end_time': run.end_time,
                        'active': run.active, 'hash': run.hash}
    by_hash = {props['hash']: run_id for run_id, props in runs.items()}
    metrics = {}
    for metric in repo.query_metrics(f'run.experiment == "{experiment}"'):
        run_id = by_hash[metric.run.hash]
        assert metric.context.to_dict() == {}
        steps, (values, _epochs, times) = metric.data.items_list()
        assert metric.name not in metrics.setdefault(run_id, {}), (run_id, metric.name)
        metrics[run_id][metric.name] = list(zip(steps, values, times))
    return runs, metrics


def test_a_page_and_one_run_experiment_end_to_end_and_rerun_adds_nothing(store_past_a_page, tmp_path, capsys):
    uri, expected = store_past_a_page
    repo = str(tmp_path / 'aim')
    report = tmp_path / 'report.json'
    argv = ['--tracking-uri', uri, '--experiment', 'big', '--page-size', str(PAGE), '--repo', repo,
            '--report', str(report), '--skipped', str(tmp_path / 'skipped.jsonl')]
    assert mlflow_to_aim.run(argv) == 0
    counters = json.loads(report.read_text())['counters']
    assert counters['runs_written'] == RUNS and counters['points_written'] == RUNS * 3

    runs, metrics = read_experiment(repo, 'big')
    assert sorted(runs) == sorted(expected)
    for run_id, want in expected.items():
        got = runs[run_id]
        assert (got['name'], got['experiment']) == (want['name'], 'big'), run_id
        assert (got['params'], got['tags']) == (want['params'], want['tags']), run_id
        assert abs(got['creation_time'] - want['start_time'] / 1000) < 1e-3, run_id
        assert got['active'] is False, run_id
        assert list(metrics[run_id]) == ['loss'], run_id
        have, points = metrics[run_id]['loss'], want['metrics']['loss']
        assert [(s, v) for s, v, _ in have] == [(s, v) for s, v, _ in points], run_id
        assert all(abs(t - ts / 1000) < 1e-3 for (_, _, t), (_, _, ts) in zip(have, points)), run_id

    assert mlflow_to_aim.run(argv) == 0  # again: the same runs, rewritten in place
    again_runs, again_metrics = read_experiment(repo, 'big')
    assert {k: v['hash'] for k, v in again_runs.items()} == {k: v['hash'] for k, v in runs.items()}
    assert again_metrics == metrics
