"""Reading an Aim repo back through the Aim SDK, the way a user would, for comparison with a source."""
from __future__ import annotations

import json
from typing import Dict, List, Tuple

from aim import Repo

Sequence = List[Tuple[int, float, float]]  # (step, value, wall time)


def read_metrics(repo_path: str) -> Dict[Tuple[str, str, str], Sequence]:
    """{(run name, context as sorted JSON, metric name): [(step, value, time), ...]} for every metric."""
    repo = Repo.from_path(repo_path)
    out = {}
    for run in repo.iter_runs():
        for metric in run.metrics():
            steps, (values, _epochs, times) = metric.data.items_list()
            key = (run.name, json.dumps(metric.context.to_dict(), sort_keys=True), metric.name)
            assert key not in out, f'duplicate sequence {key}'
            out[key] = list(zip(steps, values, times))
    return out


def read_runs(repo_path: str) -> Dict[str, dict]:
    """{run name: {hash, experiment, creation_time, end_time, active, attributes}}."""
    repo = Repo.from_path(repo_path)
    runs = {}
    for run in repo.iter_runs():
        assert run.name not in runs, f'duplicate run {run.name}'
        runs[run.name] = {
            'hash': run.hash, 'experiment': run.experiment, 'creation_time': run.creation_time,
            'end_time': run.end_time, 'active': run.active,
            'attributes': {k: v for k, v in run.meta_run_attrs_tree.collect().items()
                           if not k.startswith('__')},
        }
    return runs


def expected_metrics(seed: dict) -> Dict[Tuple[str, str, str], Sequence]:
    """The same shape from what ``samples.tensorboard_logs`` writers returned: {(run, context): points}."""
    out = {}
    for (run, context), points in seed.items():
        ctx = json.dumps({'entry': context} if context else {}, sort_keys=True)
        for (tag, step), (value, wall_time) in points.items():
            out.setdefault((run, ctx, tag), []).append((step, value, wall_time))
    return {k: sorted(v) for k, v in out.items()}


def assert_same_points(actual: Dict, expected: Dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key, points in expected.items():
        got = actual[key]
        assert [s for s, _, _ in got] == [s for s, _, _ in points], key
        assert [v for _, v, _ in got] == [v for _, v, _ in points], key  # float32-exact
        for (_, _, t_got), (_, _, t_want) in zip(got, points):
            assert abs(t_got - t_want) < 1e-3, (key, t_got, t_want)
