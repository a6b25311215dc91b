"""mlflow_to_aim: flags, then whole pipelines from real MLflow stores (SQLite with runs past a listing page and a
50,000-point history, a real ``mlflow server``, a file store), read back through the Aim SDK."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from pipelines import mlflow_to_aim
from pipelines.common import UsageError
from samples.mlflow_store import (SVG_SIZE, log_long_metric, log_many_runs, log_rich_run, scratch_dir,
                                  svg_rendering_matches)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------- flags

def test_parse_flags_and_beam_passthrough(monkeypatch):
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
    args, beam_args = mlflow_to_aim.parse(['--tracking_uri', 'sqlite:///x.db', '--experiment', 'a', '--experiment',
                                           '3', '--repo', 'out', '--dry-run', '--strict', '--runner', 'DirectRunner'])
    assert (args.tracking_uri, args.experiment, args.repo, args.dry_run, args.strict) == \
        ('sqlite:///x.db', ['a', '3'], 'out', True, True)
    assert args.skipped == os.path.abspath('out') + '.skipped.jsonl'
    assert beam_args == ['--runner', 'DirectRunner']


def test_tracking_uri_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv('MLFLOW_TRACKING_URI', 'http://127.0.0.1:1')
    assert mlflow_to_aim.parse(['--repo', 'r'])[0].tracking_uri == 'http://127.0.0.1:1'
    monkeypatch.delenv('MLFLOW_TRACKING_URI')
    with pytest.raises(UsageError, match='--tracking-uri'):
        mlflow_to_aim.parse(['--repo', 'r'])


def test_missing_uri_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
    with pytest.raises(SystemExit) as exit_info:
        mlflow_to_aim.run(['--repo', 'r'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'MLFLOW_TRACKING_URI' in err


# ----------------------------------------------------------------------------------------------- read back

def read_aim(repo_path):
    """{mlflow run id: everything a user sees of the Aim run}, through the Aim SDK."""
    from aim import Repo

    getters = {'image': ('get_image_sequence', ('aim.image', 'list(aim.image)')),
               'text': ('get_text_sequence', ('aim.text',)),
               'audio': ('get_audio_sequence', ('aim.audio', 'list(aim.audio)'))}
    out = {}
    for run in Repo.from_path(repo_path).iter_runs():
        run_id = run.get('mlflow_run_id')
        assert run_id not in out, f'two Aim runs for {run_id}'
        metrics = {}
        for metric in run.metrics():
            assert metric.context.to_dict() == {}
            steps, (values, _epochs, times) = metric.data.items_list()
            metrics[metric.name] = list(zip(steps, values, times))
        artifacts, images = {}, {}
        for kind, (getter, dtypes) in getters.items():
            for name, context, _ in run.iter_sequence_info_by_type(dtypes):
                steps, (values, _epochs, _times) = getattr(run, getter)(name, context).data.items_list()
                assert steps == [0], (name, steps)
                value = values[0]
                if kind == 'text':
                    artifacts[name] = (kind, value.data.encode())
                elif kind == 'image':
                    artifacts[name] = (kind, bytes(value.storage['data'].load()))
                    images[name] = (value.storage['format'], value.storage['width'], value.storage['height'],
                                    value.storage['caption'])
                else:
                    artifacts[name] = (kind, value.get().read())
        out[run_id] = {
            'name': run.name, 'experiment': run.experiment, 'description': run.description,
            'experiment_id': run.get('mlflow_experiment_id'), 'run_name': run.get('mlflow_run_name'),
            'status': run.get('mlflow_status'), 'params': run.get('params'), 'tags': run.get('tags'),
            'aim_tags': sorted(run.props.tags),
            'creation_time': run.creation_time, 'end_time': run.end_time, 'metrics': metrics,
            'artifacts': artifacts, 'images': images,
        }
    return out


def assert_converted(repo_path, expected):
    actual = read_aim(repo_path)
    assert sorted(actual) == sorted(expected)
    for run_id, want in expected.items():
        got = actual[run_id]
        assert (got['name'], got['run_name'], got['experiment'], got['experiment_id']) == \
            (want['name'], want['name'], want['experiment'], want['experiment_id']), run_id
        assert got['params'] == want['params'] and got['tags'] == want['tags'], run_id
        assert got['aim_tags'] == want['aim_tags'], run_id
        assert (got['description'] or None) == want['description'], run_id
        assert got['status'] == want['status']
        assert abs(got['creation_time'] - want['start_time'] / 1000) < 1e-3
        if want['end_time'] is not None:
            assert abs(got['end_time'] - want['end_time'] / 1000) < 1e-3
        assert sorted(got['metrics']) == sorted(want['metrics']), run_id
        for key, points in want['metrics'].items():
            have = got['metrics'][key]
            assert [(s, v) for s, v, _ in have] == [(s, v) for s, v, _ in points], (run_id, key)
            assert max(abs(t - ts / 1000) for (_, _, t), (_, _, ts) in zip(have, points)) < 1e-3, (run_id, key)
        svgs = {path for path in want['artifacts'] if path.endswith('.svg')}
        assert {p: a for p, a in got['artifacts'].items() if p not in svgs} == \
            {p: a for p, a in want['artifacts'].items() if p not in svgs}, run_id
        for path in svgs:  # Aim holds the SVG's PNG rendering
            kind, png = got['artifacts'][path]
            assert kind == 'image' and svg_rendering_matches(png), (run_id, path)
            assert got['images'][path] == ('png', *SVG_SIZE, path), (run_id, path)
        for path, (kind, data) in want['artifacts'].items():
            if kind == 'image' and path not in svgs:  # the original bytes, their format (by extension), size
                from PIL import Image
                with Image.open(io.BytesIO(data)) as image:
                    assert got['images'][path] == (path.rsplit('.', 1)[1], *image.size, path), (run_id, path)
    return actual


def point_count(actual):
    return sum(len(points) for run in actual.values() for points in run['metrics'].values())


def skipped_lines(path):
    with open(path) as lines:
        return [json.loads(line) for line in lines]


def convert(*args, tmp_path):
    argv = [*args, '--skipped', str(tmp_path / 'skipped.jsonl')]
    return mlflow_to_aim.run(argv)


# ------------------------------------------------- SQLite: a 50,000-point history (runs past a page: test_mlflow_scale)

@pytest.fixture(scope='module')
def big_store():
    """Experiment 'detail' with a rich run and a 50,000-point history, and 'other'; real MLflow client
    calls into a SQLite store. (The 1,001-run experiment is tests/test_mlflow_scale.py's.)"""
    from mlflow import MlflowClient

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        detail = client.create_experiment('detail', artifact_location=f'file://{root}/artifacts-detail')
        other = client.create_experiment('other', artifact_location=f'file://{root}/artifacts-other')
        expected = log_long_metric(client, detail, 'long', 50_000)
        expected.update(log_rich_run(client, detail, 'rich', salt=2))
        expected.update(log_many_runs(client, other, 2, prefix='other'))
        yield uri, other, expected


@pytest.mark.slow
def test_sqlite_store_every_point_and_rerun_adds_nothing(big_store, tmp_path, capsys):
    uri, other, expected = big_store
    want = {k: v for k, v in expected.items() if v['experiment'] == 'detail'}
    repo = str(tmp_path / 'aim')
    assert convert('--tracking-uri', uri, '--experiment', 'detail', '--repo', repo, tmp_path=tmp_path) == 0
    first = assert_converted(repo, want)
    assert max(len(r['metrics'].get('long', [])) for r in first.values()) == 50_000
    report = capsys.readouterr().out
    assert 'runs written' in report
    skipped = skipped_lines(tmp_path / 'skipped.jsonl')
    assert sorted((s['kind'], s['source'].split('/', 1)[-1]) for s in skipped if s['kind'] == 'artifact') == \
        [('artifact', 'model/weights.bin')]  # the SVG is an image now
    assert [s['count'] for s in skipped if s['kind'] == 'point'] == [1]  # the duplicate step of 'loss'

    # again, plus the other experiment by id: nothing doubles, the new runs are added
    assert convert('--tracking-uri', uri, '--experiment', 'detail', '--experiment', other, '--repo', repo,
                   tmp_path=tmp_path) == 0
    second = assert_converted(repo, expected)
    assert point_count({k: second[k] for k in first}) == point_count(first)


# ------------------------------------------------------------------------------------- a real mlflow server

@pytest.fixture(scope='module')
def mlflow_server(mlflow_http):
    """The session's ``mlflow server`` (SQLite, artifacts proxied by the server), filled over HTTP with two
    experiments of this module's own; the tests name the experiments they convert."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_http.url)
    first = client.create_experiment('served')
    second = client.create_experiment('second')
    expected = log_rich_run(client, first, 'served-rich', salt=3)
    expected.update(log_many_runs(client, first, 2, prefix='served'))
    expected.update(log_many_runs(client, second, 2, prefix='second'))
    return mlflow_http, first, second, expected


@pytest.mark.slow
def test_tracking_server_by_name_and_by_id(mlflow_server, tmp_path):
    """By name on two worker processes, then by id and name in the launcher's own process (as any store of
    under 100 runs is converted by default): worker processes cost seconds of start-up each."""
    server, first, second, expected = mlflow_server
    repo = str(tmp_path / 'aim')
    argv = [sys.executable, '-m', 'pipelines.mlflow_to_aim', '--tracking-uri', server.url, '--repo', repo,
            '--skipped', str(tmp_path / 'skipped.jsonl')]
    two_workers = ['--direct_num_workers', '2', '--direct_running_mode', 'multi_processing']
    by_name = subprocess.run([*argv, '--experiment', 'served', *two_workers], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert by_name.returncode == 0, by_name.stderr[-3000:]
    first_pass = assert_converted(repo, {k: v for k, v in expected.items() if v['experiment'] == 'served'})
    by_id = subprocess.run([*argv, '--experiment', second, '--experiment', 'served'], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert by_id.returncode == 0, by_id.stderr[-3000:]
    both = assert_converted(repo, expected)
    assert point_count({k: both[k] for k in first_pass}) == point_count(first_pass)


def test_unknown_experiment_is_one_line_naming_it(mlflow_server, tmp_path, capsys):
    server = mlflow_server[0]
    with pytest.raises(SystemExit) as exit_info:
        convert('--tracking-uri', server.url, '--experiment', 'no-such-thing', '--repo', str(tmp_path / 'a'),
                tmp_path=tmp_path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'no-such-thing'" in err
    assert not os.path.exists(tmp_path / 'a')


def test_dry_run_lists_and_writes_nothing(mlflow_server, tmp_path, capsys):
    server, first, _, expected = mlflow_server
    repo = tmp_path / 'aim'
    assert convert('--tracking-uri', server.url, '--experiment', first, '--repo', str(repo), '--dry-run',
                   tmp_path=tmp_path) == 0
    out = capsys.readouterr().out
    assert f"experiment 'served' [id {first}]: 3 runs" in out
    served = [v for v in expected.values() if v['experiment'] == 'served']
    assert all(f"run '{v['name']}' [{v['status']}, id {v['run_id']}]: " in out for v in served)
    assert "experiment 'second'" not in out
    assert not repo.exists() and not (tmp_path / 'skipped.jsonl').exists()


# ----------------------------------------------------------------------------------------------- file store

def test_file_store(tmp_path, monkeypatch):
    """MLflow 3.17 keeps the file store in 'maintenance mode': it refuses to open one unless
    MLFLOW_ALLOW_FILE_STORE=true. The writer here sets it; the converter sets it itself."""
    from mlflow import MlflowClient

    store = tmp_path / 'mlruns'
    monkeypatch.setenv('MLFLOW_ALLOW_FILE_STORE', 'true')
    client = MlflowClient(f'file://{store}')
    experiment_id = client.create_experiment('files')
    expected = log_rich_run(client, experiment_id, 'file-rich', salt=4, steps=12)
    expected.update(log_many_runs(client, experiment_id, 2, prefix='file'))
    monkeypatch.delenv('MLFLOW_ALLOW_FILE_STORE')
    repo = str(tmp_path / 'aim')
    assert convert('--tracking-uri', str(store), '--repo', repo, '--strict', tmp_path=tmp_path) == 1  # skipped some
    assert_converted(repo, expected)


# ----------------------------------------------------------------------------------------------- run tags

@pytest.mark.slow
def test_mlflow_tags_become_aim_run_tags_once(tmp_path, capsys):
    """User tags become Aim run tags (``key=value``, ``key`` for an empty value) where Aim's tag rules
    allow; the others are dead letters and stay in the ``tags`` attribute; a re-run adds no tag twice and
    adds tags logged since."""
    from aim import Repo
    from aim.sdk.types import QueryReportMode
    from mlflow import MlflowClient

    from samples.mlflow_store import LONG_TAG_VALUE

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        experiment = client.create_experiment('tagged', artifact_location=f'file://{root}/artifacts')
        first = client.create_run(experiment, run_name='first', tags={
            'team': 'vision', 'reviewed': '', 'summary': LONG_TAG_VALUE, 'note': 'line one\nline two'}).info.run_id
        second = client.create_run(experiment, run_name='second', tags={'team': 'vision', 'stage': 's2'}).info.run_id
        repo = str(tmp_path / 'aim')
        argv = ['--tracking-uri', uri, '--repo', repo, '--skipped', str(tmp_path / 'skipped.jsonl')]

        def aim_tags():
            """({mlflow run id: sorted Aim tags}, every tag name of the repo), read by a new process as a
            user would (in this one, Aim's cached SQLite session would not see what a later run wrote)."""
            script = ('import json, sys\nfrom aim import Repo\nrepo = Repo.from_path(sys.argv[1])\n'
                      'print(json.dumps([{r.get("mlflow_run_id"): sorted(r.props.tags) for r in repo.iter_runs()},'
                      ' sorted(t.name for t in repo.structured_db.tags())]))')
            done = subprocess.run([sys.executable, '-c', script, repo], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
            return json.loads(done.stdout.strip().splitlines()[-1])

        assert mlflow_to_aim.run(argv) == 0
        tags, names = aim_tags()
        assert tags == {first: ['reviewed', 'team=vision'], second: ['stage=s2', 'team=vision']}
        assert names == ['reviewed', 'stage=s2', 'team=vision']  # one Aim tag shared by both runs
        (run,) = [r for r in Repo.from_path(repo).iter_runs() if r.get('mlflow_run_id') == first]
        assert run.get('tags') == {'team': 'vision', 'reviewed': '', 'summary': LONG_TAG_VALUE,
                                   'note': 'line one\nline two'}
        letters = sorted((s['detail'], s['kind'], s['count']) for s in skipped_lines(tmp_path / 'skipped.jsonl'))
        assert letters == [('note', 'tag', 0), ('summary', 'tag', 0)]
        report = capsys.readouterr().out
        assert '  tags read                   6\n  tags skipped                2\n' in report
        # Aim's query language sees them
        query = Repo.from_path(repo).query_runs("'team=vision' in run.tags", report_mode=QueryReportMode.DISABLED)
        assert sorted(r.run.get('mlflow_run_id') for r in query.iter_runs()) == sorted([first, second])

        # a re-run adds nothing twice; a tag logged since is added; --strict counts refused tags
        assert mlflow_to_aim.run(argv) == 0
        assert aim_tags() == [tags, names]
        client.set_tag(second, 'checked', 'yes')
        assert mlflow_to_aim.run(argv + ['--strict']) == 1
        assert aim_tags() == [{first: ['reviewed', 'team=vision'], second: ['checked=yes', 'stage=s2', 'team=vision']},
                              ['checked=yes', 'reviewed', 'stage=s2', 'team=vision']]
