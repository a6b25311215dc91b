"""The MLflow benchmark's store holds what ``expected_counts`` says (read back through MlflowClient), and is
written once."""
from __future__ import annotations

import os

from benchmarks import mlflow_store as bench


def test_store_holds_the_expected_runs_and_is_cached(tmp_path):
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    uri, expected = bench.ensure_store(str(tmp_path), 3)
    assert expected == bench.expected_counts(3) == {'runs': 3, 'metric_points': 90, 'artifacts': 2}
    client = MlflowClient(uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    assert sorted(experiments.values()) == sorted([*bench.EXPERIMENTS, 'Default'])
    runs = client.search_runs(list(experiments), run_view_type=ViewType.ALL)
    assert len(runs) == 3
    points = artifacts = 0
    for run in runs:
        assert run.info.status == 'FINISHED' and len(run.data.params) == bench.PARAMS
        assert sorted(run.data.metrics) == sorted(bench.KEYS)
        points += sum(len(client.get_metric_history(run.info.run_id, key)) for key in bench.KEYS)
        files = [a.path for a in client.list_artifacts(run.info.run_id)]
        files += [a.path for a in client.list_artifacts(run.info.run_id, 'plots')]
        artifacts += len([path for path in files if path != 'plots'])
    assert (points, artifacts) == (expected['metric_points'], expected['artifacts'])

    database = uri[len('sqlite:///'):]
    written = os.stat(database).st_mtime_ns
    assert bench.ensure_store(str(tmp_path), 3) == (uri, expected)  # cached: not written again
    assert os.stat(database).st_mtime_ns == written
