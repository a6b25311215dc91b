"""A new local repo is created while the launcher loads (``pipelines.early_repo``): the repo it makes is
Aim's own, and a command that fails or writes nothing leaves no repo behind."""
import contextlib
import os
import sqlite3

import pytest

from aim import Repo

from connectors.aim_sink import open_repo
from pipelines import early_repo
from tests.test_cloud_sources import error_lines


@pytest.mark.parametrize('argv, repo', [
    (['--logdir', 'l', '--repo', 'r'], 'r'),
    (['--repo=r', '--flat'], 'r'),
    (['--repo', 'r', '--repo', 's'], None),  # repeated: left to the real parser
    (['--repository', 'r'], None),
    (['--logdir', 'l'], None),
    (['--repo'], None),
])
def test_repo_flag(argv, repo):
    assert early_repo.repo_flag(argv) == repo


@pytest.mark.parametrize('extra', [['--dry-run'], ['--dry_run'], ['--help'], ['-h']])
def test_nothing_starts_for_a_command_that_writes_nothing(tmp_path, extra):
    assert early_repo.start(['--logdir', 'l', '--repo', str(tmp_path / 'new'), *extra]) is None
    assert not (tmp_path / 'new').exists()


def test_nothing_starts_for_an_existing_path_or_a_remote_repo(tmp_path):
    assert early_repo.start(['--repo', str(tmp_path)]) is None
    assert early_repo.start(['--repo', 'aim://127.0.0.1:53800']) is None
    assert early_repo.start(['--repo', 's3://bucket/repo']) is None


def test_a_claimed_repo_is_aims_and_stays(tmp_path):
    path = tmp_path / 'a' / 'b' / 'repo'
    early = early_repo.start(['--logdir', 'l', '--repo', str(path)])
    assert early is not None and os.path.dirname(early.staging) == str(tmp_path)  # beside, until claimed
    assert not (tmp_path / 'a').exists()
    assert early.claim(str(path)) is True
    early.discard()  # what runs at exit: a claimed repo is kept
    assert sorted(os.listdir(tmp_path)) == ['a']  # installed; the staging directory is gone
    repo = Repo.from_path(str(path))  # Aim opens it as an up-to-date repo (no migration needed)
    assert list(repo.list_all_runs()) == []
    assert Repo.check_repo_status(str(path)).name == 'UPDATED'


def _schema(repo_path):
    with contextlib.closing(sqlite3.connect(os.path.join(repo_path, '.aim', 'run_metadata.sqlite'))) as db:
        return (sorted(db.execute('SELECT type, name, tbl_name, sql FROM sqlite_master')),
                db.execute('SELECT version_num FROM alembic_version').fetchall())


def test_the_early_repo_has_the_schema_aims_own_creation_gives(tmp_path):
    early = early_repo.start(['--repo', str(tmp_path / 'early')])  # migrated in the subprocess's interpreter
    assert early.claim(str(tmp_path / 'early'))
    open_repo(str(tmp_path / 'aims'), create=True)  # Aim's path: alembic in a new interpreter
    tables, version = _schema(tmp_path / 'early')
    assert (tables, version) == _schema(tmp_path / 'aims')
    assert {name for kind, name, _, _ in tables if kind == 'table'} >= {'run', 'experiment', 'tag'}
    assert version and version[0][0]
    assert sorted(os.listdir(tmp_path / 'early' / '.aim')) == sorted(os.listdir(tmp_path / 'aims' / '.aim'))


def test_an_unclaimed_repo_is_removed_with_its_staging_directory(tmp_path):
    path = tmp_path / 'a' / 'b' / 'repo'
    early = early_repo.start(['--repo', str(path)])
    assert early.claim(str(tmp_path / 'other')) is False  # the command's repo turned out to be another
    assert os.listdir(tmp_path) == []  # no repo, no directory of its path, no staging directory
    early.discard()  # again, at exit: nothing more to do


@pytest.mark.slow
@pytest.mark.parametrize('bad', [
    ['--logdir', 'MISSING'],  # a usage error after the start
    ['--logdir', 'LOGDIR', '--storage-options', '{not json'],  # a bad flag value
    ['--logdir', 'LOGDIR', '--dry-run'],  # writes nothing
    ['--logdir', 'LOGDIR', '--flat', '--flat=1'],  # argparse refuses it (exits before any check)
])
def test_a_command_that_fails_or_writes_nothing_leaves_no_repo(tf_to_aim, seed_logdir, tmp_path, bad):
    logdir, _ = seed_logdir
    argv = [{'MISSING': str(tmp_path / 'missing'), 'LOGDIR': logdir}.get(a, a) for a in bad]
    repo = tmp_path / 'new' / 'repo'
    result = tf_to_aim(*argv, '--repo', str(repo), workers=1)
    if '--dry-run' in bad:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert len(error_lines(result.stderr)) >= 1
    assert not (tmp_path / 'new').exists()


@pytest.mark.slow
def test_a_conversion_into_a_new_nested_repo(tf_to_aim, seed_logdir, tmp_path):
    logdir, _ = seed_logdir
    repo = tmp_path / 'x' / 'y' / 'repo'
    result = tf_to_aim('--logdir', logdir, '--repo', str(repo), workers=1)
    assert result.returncode == 0, result.stderr
    assert len(list(Repo.from_path(str(repo)).iter_runs())) == 3
    assert os.path.isfile(repo / '.aim' / 'VERSION')
