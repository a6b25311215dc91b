"""Converted runs read like the runs they came from, in Aim's own UI and through the Aim SDK, at once.

One repo gets a TensorBoard logdir (``pipelines.tf_to_aim``) and an MLflow SQLite store
(``pipelines.mlflow_to_aim``). Right after the pipelines, a NEW process reads it with the Aim SDK (no
``aim storage reindex``); only then does ``aim up`` start (its own index manager would otherwise hide a
missing index), and the test reads the runs through its HTTP API and renders the Runs page in Debian's
headless Chromium.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap

import pytest

from samples.tensorboard_logs import write_seed_logdir
from tests import ui_server

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TB_EXPERIMENT = 'logs'  # the logdir's base name
MLFLOW_EXPERIMENT = 'ui-mlflow'
MLFLOW_START_MS = 1_710_000_000_000

# Reads the repo in a fresh interpreter, as a user opening it after the pipeline would; prints JSON.
SDK_READBACK = textwrap.dedent('''
    import json, sys
    from aim import Repo, Run
    from aim.sdk.types import QueryReportMode

    repo_path, metric_queries = sys.argv[1], json.loads(sys.argv[2])
    repo = Repo.from_path(repo_path)
    out = {'iter_runs': {}, 'read_only': {}, 'by_name': {}, 'metric_queries': {}}
    for run in repo.iter_runs():
        out['iter_runs'][run.hash] = {
            'name': run.name, 'experiment': run.experiment, 'creation_time': run.creation_time,
            'end_time': run.end_time, 'active': run.active}
    for run_hash, seen in out['iter_runs'].items():
        run = Run(run_hash, repo=repo, read_only=True)
        out['read_only'][run_hash] = {
            'name': run.name, 'experiment': run.experiment, 'end_time': run.end_time,
            'attributes': {k: v for k, v in run.get(..., {}).items() if not k.startswith('__')},
            'contexts': sorted({json.dumps(ctx.to_dict(), sort_keys=True)
                                for _, ctx, _ in run.iter_sequence_info_by_type(('float', 'int'))})}
        hits = repo.query_runs(f'run.name == {seen["name"]!r}', report_mode=QueryReportMode.DISABLED).iter_runs()
        out['by_name'][seen['name']] = sorted(collection.run.hash for collection in hits)
    for query in metric_queries:
        found = repo.query_metrics(query, report_mode=QueryReportMode.DISABLED).iter()
        out['metric_queries'][query] = sorted(
            [metric.run.name, metric.name, json.dumps(metric.context.to_dict(), sort_keys=True)] for metric in found)
    print(json.dumps(out))
''')


def _log_mlflow_runs(uri: str, root: str) -> dict:
    """Two finished runs with params, user tags, start and end times, through MLflow's own client."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(uri)
    experiment_id = client.create_experiment(MLFLOW_EXPERIMENT, artifact_location=f'file://{root}/artifacts')
    expected = {}
    for i, (name, lr) in enumerate((('sgd-baseline', '0.001'), ('adam-wide', '0.01'))):
        start_ms = MLFLOW_START_MS + 3_600_000 * i
        end_ms = start_ms + 754_321 * (i + 1)  # 12 min 34.321 s, then twice that
        run = client.create_run(experiment_id, start_time=start_ms, run_name=name)
        client.log_batch(run.info.run_id,
                         metrics=[Metric('loss', 1.0 / (step + 1 + i), start_ms + 1000 * step, step)
                                  for step in range(5)],
                         params=[Param('lr', lr), Param('optimizer', name.split('-')[0])],
                         tags=[RunTag('team', 'ui')])
        client.set_terminated(run.info.run_id, 'FINISHED', end_time=end_ms)
        expected[name] = {'experiment': MLFLOW_EXPERIMENT, 'creation_time': start_ms / 1000,
                          'end_time': end_ms / 1000, 'lr': lr}
    return expected


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """The repo, what each run must look like ({name: experiment, creation/end time}), and what a new
    process read from it through the Aim SDK right after the pipelines."""
    from pipelines import mlflow_to_aim, tf_to_aim

    tmp = tmp_path_factory.mktemp('ui')
    logdir, repo = str(tmp / TB_EXPERIMENT), str(tmp / 'repo')
    seed = write_seed_logdir(logdir, steps=20)
    expected = {}
    for (run, _context), points in seed.items():
        times = [wall_time for _value, wall_time in points.values()]
        want = expected.setdefault(run, {'experiment': TB_EXPERIMENT, 'creation_time': min(times),
                                         'end_time': max(times), 'logdir': os.path.join(logdir, run)})
        want['creation_time'] = min(want['creation_time'], min(times))
        want['end_time'] = max(want['end_time'], max(times))
    assert tf_to_aim.run(['--logdir', logdir, '--repo', repo, '--skipped', str(tmp / 'tb.jsonl')]) == 0

    mlflow_uri = f'sqlite:///{tmp}/mlflow.db'
    expected.update(_log_mlflow_runs(mlflow_uri, str(tmp)))
    assert mlflow_to_aim.run(['--tracking-uri', mlflow_uri, '--repo', repo,
                              '--skipped', str(tmp / 'mlflow.jsonl')]) == 0

    queries = ['metric.name == "loss" and run.params.lr == "0.001"',
               'metric.name == "loss" and run.experiment == "ui-mlflow"',
               f'run.tensorboard_logdir == {expected["group_1/run_2"]["logdir"]!r}']
    done = subprocess.run([sys.executable, '-c', SDK_READBACK, repo, json.dumps(queries)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return repo, expected, json.loads(done.stdout.strip().splitlines()[-1]), str(tmp)


def _assert_times(run: dict, want: dict, name: str) -> None:
    assert run['creation_time'] == pytest.approx(want['creation_time'], abs=1e-3), name
    assert run['end_time'] == pytest.approx(want['end_time'], abs=1e-3), name


# ------------------------------------------------------------------------------------------ the Aim SDK

def test_new_process_sees_every_run_with_its_attributes_without_reindex(converted):
    _repo, expected, sdk, _ = converted
    listed = {run['name']: run for run in sdk['iter_runs'].values()}
    assert sorted(listed) == sorted(expected)
    for name, want in expected.items():
        assert listed[name]['experiment'] == want['experiment'], name
        assert listed[name]['active'] is False, name
        _assert_times(listed[name], want, name)
    for run_hash, run in sdk['read_only'].items():
        name = sdk['iter_runs'][run_hash]['name']
        assert (run['name'], run['experiment']) == (name, expected[name]['experiment'])
        assert run['end_time'] == pytest.approx(expected[name]['end_time'], abs=1e-3), name
        if 'logdir' in expected[name]:
            assert run['attributes']['tensorboard_logdir'] == expected[name]['logdir']
        else:
            assert run['attributes']['params']['lr'] == expected[name]['lr']
            assert run['attributes']['tags'] == {'team': 'ui'}
    # one query by name finds exactly that run
    assert {name: hashes for name, hashes in sdk['by_name'].items()} == \
        {run['name']: [run_hash] for run_hash, run in sdk['iter_runs'].items()}


def test_no_context_holds_none(converted):
    _repo, _expected, sdk, _ = converted
    contexts = {name: sdk['read_only'][h]['contexts'] for h, name in
                ((h, r['name']) for h, r in sdk['iter_runs'].items())}
    assert contexts['group_1/run_2'] == ['{"entry": "train"}', '{"entry": "validate"}', '{}']
    assert contexts['run_1'] == contexts['sgd-baseline'] == ['{}']
    assert not any('null' in c for cs in contexts.values() for c in cs)


def test_query_metrics_filters_on_converted_attributes(converted):
    _repo, _expected, sdk, _ = converted
    queries = sdk['metric_queries']
    assert queries['metric.name == "loss" and run.params.lr == "0.001"'] == [['sgd-baseline', 'loss', '{}']]
    assert queries['metric.name == "loss" and run.experiment == "ui-mlflow"'] == \
        [['adam-wide', 'loss', '{}'], ['sgd-baseline', 'loss', '{}']]
    by_logdir = [q for q in queries if q.startswith('run.tensorboard_logdir')][0]
    assert queries[by_logdir] == sorted(
        [['group_1/run_2', 'lr', '{}']] + [['group_1/run_2', tag, json.dumps({'entry': ctx})]
                                          for tag in ('loss', 'accuracy') for ctx in ('train', 'validate')])


# --------------------------------------------------------------------------------------- Aim's own UI

@pytest.fixture(scope='module')
def ui(converted):
    repo, expected, _sdk, tmp = converted
    with ui_server.aim_up(repo) as url:
        yield url, expected, tmp


def test_ui_api_shows_names_experiments_and_times(ui):
    url, expected, _ = ui
    runs = ui_server.search_runs(url)
    props = {run['props']['name']: run['props'] for run in runs.values()}
    assert sorted(props) == sorted(expected)
    for name, want in expected.items():
        assert props[name]['experiment']['name'] == want['experiment'], name
        assert props[name]['active'] is False, name
        _assert_times(props[name], want, name)
    # the UI's own search box: a filter on a converted param
    hits = ui_server.search_runs(url, 'run.params.lr == "0.01"')
    assert [run['props']['name'] for run in hits.values()] == ['adam-wide']


def _table_date(timestamp: float) -> str:
    """Aim UI's TABLE_DATE_FORMAT ``HH:mm:ss · DD MMM, YY``, in UTC (Chromium runs with TZ=UTC)."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime('%H:%M:%S \u00b7 %d %b, %y')


def test_runs_page_renders_the_run_names_dates_and_durations(ui):
    url, expected, tmp = ui
    screenshot = os.path.join(tmp, 'runs.png')
    dom = ui_server.render_page(f'{url}/runs', tmp, screenshot=screenshot)
    for name, want in expected.items():
        assert f'class="RunNameColumn__runName" title="{name}"' in dom, name
        assert f'>{_table_date(want["creation_time"])}<' in dom, name
    assert dom.count('title="Finished"') == len(expected)
    assert 'title="In progress"' not in dom
    # durations as Aim's humanizer writes them: 19 steps of 0.5 s, 12 min 34.321 s and twice that
    assert dom.count('>9sec 500ms<') == 3
    assert '>12min 34sec<' in dom and '>25min 8sec<' in dom  # the two largest units
    with open(screenshot, 'rb') as png:
        assert png.read(8) == b'\x89PNG\r\n\x1a\n'
