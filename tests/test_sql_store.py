"""A database server behind a tracking URI is asked once, before MLflow's own ~100 s engine retry loop."""
import pytest

from connectors.sql_store import is_database_server_uri, unreachable_database
from tests import servers

FAST = {'RUNFERRY_RETRY_ATTEMPTS': '2', 'RUNFERRY_RETRY_INITIAL_SECONDS': '0.1'}


@pytest.mark.parametrize('uri, expected', [
    ('postgresql://u:p@db/mlflow', True), ('postgresql+psycopg://u@db/m', True), ('mysql+pymysql://u@h/m', True),
    ('mssql+pyodbc://u@h/m', True), ('sqlite:///tmp/m.db', False), ('http://host:5000', False),
    ('file:///tmp/mlruns', False), ('mlruns', False), ('', False), ('databricks', False)])
def test_which_uris_name_a_database_server(uri, expected):
    assert is_database_server_uri(uri) is expected


def test_stores_that_are_not_database_servers_are_left_to_mlflow(tmp_path):
    for uri in (f'sqlite:///{tmp_path}/none.db', str(tmp_path), 'http://127.0.0.1:1/'):
        assert unreachable_database(uri) is None


def test_a_server_where_nothing_listens_is_one_masked_line_after_the_retry_policy(monkeypatch, caplog):
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    port = servers.free_port()
    problem = unreachable_database(f'postgresql://bob:PGpass99@127.0.0.1:{port}/mlflow')
    assert problem is not None and '\n' not in problem
    assert problem.startswith(f'cannot connect to postgresql://bob:***@127.0.0.1:{port}/mlflow: ')
    assert 'after 2 attempts' in problem  # refused is the network's failure: retried by connectors.retry
    assert 'PGpass99' not in problem and 'PGpass99' not in caplog.text


def test_an_unknown_driver_is_named_without_the_password():
    problem = unreachable_database('postgresql+nosuchdriver://bob:PGpass99@127.0.0.1:5432/mlflow')
    assert problem.startswith('cannot open postgresql+nosuchdriver://bob:***@127.0.0.1:5432/mlflow: ')
    assert 'PGpass99' not in problem
