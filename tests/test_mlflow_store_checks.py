"""A local MLflow store that is not there is a usage error (exit 2, one line naming it) before MLflow is
asked anything: MLflow itself would create an empty database or ``mlruns`` directory and the conversion
would "succeed" with 0 runs. A database file given without ``sqlite:///`` is named with that spelling."""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import pytest

from connectors.mlflow_source import store_location_problem
from pipelines import mlflow_to_aim
from pipelines.sources.mlflow import MlflowSource

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_database(path) -> None:
    """A real SQLite file (its header), as MLflow's store would leave one."""
    with sqlite3.connect(str(path)) as db:
        db.execute('create table t (x)')


def test_existing_stores_and_other_uris_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_database(tmp_path / 'mlflow.db')
    (tmp_path / 'mlruns').mkdir()
    for uri in (f'sqlite:///{tmp_path}/mlflow.db', 'sqlite:///mlflow.db', f'sqlite:///{tmp_path}/mlflow.db?mode=ro',
                'mlruns', f'file://{tmp_path}/mlruns', 'http://127.0.0.1:5000', 'postgresql://u@h/db',
                'databricks://profile', 'sqlite:///:memory:'):
        assert store_location_problem(uri) is None, uri


def test_a_sqlite_path_with_a_typo_is_named(tmp_path):
    make_database(tmp_path / 'mlflow.db')
    problem = store_location_problem(f'sqlite:///{tmp_path}/mlfow.db')
    assert problem == (f'no SQLite database at {tmp_path}/mlfow.db (from sqlite:///{tmp_path}/mlfow.db); '
                       'MLflow would create an empty one')
    assert 'directory' in store_location_problem(f'sqlite:///{tmp_path}')


def test_a_database_file_without_a_scheme_names_the_sqlite_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_database(tmp_path / 'mlflow.db')
    make_database(tmp_path / 'store')  # no suffix: known by its SQLite header
    assert store_location_problem('mlflow.db') == \
        f'mlflow.db is a database file, not an MLflow file store: use --tracking-uri sqlite:///{tmp_path}/mlflow.db'
    assert f'use --tracking-uri sqlite:///{tmp_path}/store' in store_location_problem(f'file://{tmp_path}/store')
    assert f'--tracking-uri sqlite:///{tmp_path}/missing.db' in store_location_problem('missing.db')
    (tmp_path / 'notes.txt').write_text('x')
    assert 'is a file, not an MLflow file store' in store_location_problem('notes.txt')
    assert store_location_problem('mlrun') == \
        f'no MLflow file store at {tmp_path}/mlrun (from mlrun); MLflow would create an empty one'


@pytest.mark.slow
@pytest.mark.parametrize('spelling', ['sqlite', 'bare'])
def test_the_command_exits_2_and_mlflow_creates_nothing(tmp_path, spelling):
    """The real command, as a user types it: one line on stderr, exit 2, no database, no repo."""
    make_database(tmp_path / 'mlflow.db')
    uri = f'sqlite:///{tmp_path}/mlfow.db' if spelling == 'sqlite' else str(tmp_path / 'mlflow.db')
    done = subprocess.run([sys.executable, '-m', 'pipelines.mlflow_to_aim', '--tracking-uri', uri,
                           '--repo', str(tmp_path / 'aim')], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    if spelling == 'sqlite':
        assert line == (f'mlflow_to_aim: error: --tracking-uri: no SQLite database at {tmp_path}/mlfow.db '
                        f'(from {uri}); MLflow would create an empty one')
    else:
        assert line.endswith(f'use --tracking-uri sqlite:///{tmp_path}/mlflow.db')
    assert sorted(os.listdir(tmp_path)) == ['mlflow.db']  # no mlfow.db, no .trash, no Aim repo


def test_planning_names_the_flag_and_creates_nothing(tmp_path):
    args, _ = mlflow_to_aim.parse(['--tracking-uri', f'sqlite:///{tmp_path}/none.db', '--repo', str(tmp_path / 'a')])
    with pytest.raises(mlflow_to_aim.UsageError, match=r'^--tracking-uri: no SQLite database at '):
        MlflowSource.from_args(args).plan()
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_the_command_shows_progress_across_worker_processes(tmp_path):
    """Like tf_to_aim, a progress line (runs of total, points, rate) while the workers write; away from a
    terminal it is a plain 'progress:' line, and always one at the end with the totals."""
    from mlflow import MlflowClient

    from samples.mlflow_store import log_many_runs, scratch_dir

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        log_many_runs(client, client.create_experiment('few', artifact_location=f'file://{root}/a'), 3, steps=4)
        done = subprocess.run([sys.executable, '-m', 'pipelines.mlflow_to_aim', '--tracking-uri', uri, '--repo',
                               str(tmp_path / 'aim'), '--direct_running_mode', 'multi_processing',
                               '--direct_num_workers', '2'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith('progress: ')]
    assert lines, done.stderr[-3000:]
    assert re.fullmatch(r'progress: runs 3/3  12 points  [\d,]+ points/s  \d+s', lines[-1]), lines[-1]
