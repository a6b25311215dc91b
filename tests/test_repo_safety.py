"""Conversions sharing a repo: racing to create it or to write it, while ``aim up`` serves it, or while
another process holds its index; and the start check for a repo that cannot be written.

Every conversion is the real command (``python -m pipelines.tf_to_aim``) in its own process, one
DirectRunner worker each; results are read back through Aim's SDK (``tests/readback.py``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Dict, List

import pytest
from aim import Repo

from pipelines import early_repo
from samples.tensorboard_logs import write_tbx
from tests import ui_server
from tests.readback import assert_same_points, expected_metrics, read_metrics, read_runs
from tests.test_cloud_sources import error_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = 'racing'  # every writer's runs go to this experiment: its SQLite row is created by one


def _write_logdir(root: str, prefix: str, runs: int, steps: int = 15) -> Dict:
    """A logdir of ``runs`` runs named ``PREFIX_N`` (unique across logdirs); what was written."""
    expected = {}
    for i in range(runs):
        name = f'{prefix}_{i}'
        salt = int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)
        expected[(name, None)] = write_tbx(os.path.join(root, name), ('loss', 'acc'), steps, salt=salt % 1000,
                                           start_time=1_700_000_000.0 + salt)
    return expected


@pytest.fixture(scope='module')
def logdirs(tmp_path_factory):
    """Four small logdirs of two runs each: [(path, what was written), ...]."""
    root = tmp_path_factory.mktemp('logdirs')
    return [(str(root / f'logs_{i}'), _write_logdir(str(root / f'logs_{i}'), f'w{i}', runs=2)) for i in range(4)]


def _start(logdir: str, repo: str, skipped: str, env=None) -> subprocess.Popen:
    """The real command, one worker (the launcher's own process), output kept."""
    argv = [sys.executable, '-m', 'pipelines.tf_to_aim', '--logdir', logdir, '--repo', repo,
            '--experiment', EXPERIMENT, '--skipped', skipped]
    return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _convert(logdir: str, repo: str, skipped: str, env=None) -> subprocess.CompletedProcess:
    return _finish(_start(logdir, repo, skipped, env))


def _union(*written: Dict) -> Dict:
    out = {}
    for points in written:
        out.update(points)
    return out


def _staging_left(directory) -> List[str]:
    return [name for name in os.listdir(directory) if name.startswith('.runferry-new-repo-')]


# --- creating a repo atomically ---------------------------------------------------------------------

def test_a_second_creation_of_a_repo_keeps_the_first_and_cleans_up_its_own(tmp_path):
    path = str(tmp_path / 'a' / 'repo')
    assert early_repo.create_repo(path) is True
    marker = os.path.join(path, '.aim', 'marker')  # stands for another command's content
    open(marker, 'w').close()
    assert early_repo.create_repo(path) is False  # lost the rename: the repo in place is used
    assert os.path.exists(marker)
    assert _staging_left(tmp_path) == [] and _staging_left(tmp_path / 'a') == []
    assert sorted(os.listdir(path)) == ['.aim']


def test_a_repo_built_aside_and_renamed_opens_writes_and_reads_back(tmp_path):
    """Aim keeps no absolute path in .aim that it reads back: the SQLite URL and RocksDB paths are
    computed at open (only RocksDB's text LOG files name the path they were written at)."""
    from aim import Run

    staging = early_repo.stage(str(tmp_path / 'repo'))
    Repo(staging, init=True)
    assert early_repo.install(staging, str(tmp_path / 'repo')) is True
    assert sorted(os.listdir(tmp_path)) == ['repo']
    run = Run(repo=str(tmp_path / 'repo'), experiment='e')
    run['hparams'] = {'lr': 0.1}
    for step in range(5):
        run.track(float(step), name='loss', step=step)
    run_hash = run.hash
    run.close()
    from aim.sdk.index_manager import RepoIndexManager
    RepoIndexManager(Repo.from_path(str(tmp_path / 'repo'))).index(run_hash)  # as aim up would
    read_back = subprocess.run([sys.executable, '-c', READ_RUN, str(tmp_path / 'repo'), run_hash], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)  # a new process, as a user
    assert read_back.returncode == 0, read_back.stderr
    assert json.loads(read_back.stdout) == {'hparams': {'lr': 0.1}, 'experiment': 'e',
                                            'loss': [0.0, 1.0, 2.0, 3.0, 4.0]}


READ_RUN = '''
import json, sys
from aim import Run
from aim.storage.context import Context
run = Run(sys.argv[2], repo=sys.argv[1], read_only=True)
steps, (values, _epochs, _times) = run.get_metric('loss', Context({})).data.items_list()
print(json.dumps({'hparams': run['hparams'], 'experiment': run.experiment, 'loss': list(values)}))
'''


def test_two_commands_building_one_new_repo_share_it_and_delete_nothing(tmp_path):
    """Two commands start at once into one new path: both build (in the subprocess the launcher starts);
    the first claims it and writes; the second, whether it claims too or fails (unclaimed, discarded
    at exit), leaves the first one's repo and everything in it."""
    path = str(tmp_path / 'new' / 'repo')
    argv = ['--logdir', 'l', '--repo', path]
    first, second, third = early_repo.start(argv), early_repo.start(argv), early_repo.start(argv)
    assert first.claim(path) is True
    marker = os.path.join(path, '.aim', 'marker')  # stands for the first command's runs
    open(marker, 'w').close()
    assert second.claim(path) is True  # the first one's repo, used as it is
    third.discard()  # a command that failed with a usage error: what runs at its exit
    for early in (first, second, third):
        early.discard()
    assert os.path.exists(marker)
    assert _staging_left(tmp_path) == [] and os.listdir(tmp_path / 'new') == ['repo']
    assert Repo.check_repo_status(path).name == 'UPDATED'


@pytest.mark.slow
def test_a_failing_command_beside_a_conversion_into_the_same_new_repo(tmp_path, logdirs):
    """A command with a bad flag, started just after a conversion into the same new repo, fails alone:
    it deletes nothing, and the conversion's runs are all there."""
    repo = str(tmp_path / 'new' / 'repo')
    converting = _start(logdirs[0][0], repo, str(tmp_path / 'skipped0.jsonl'))
    time.sleep(0.5)
    failing = _finish(subprocess.Popen(
        [sys.executable, '-m', 'pipelines.tf_to_aim', '--logdir', logdirs[1][0], '--repo', repo,
         '--storage-options', '{not json'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    converted = _finish(converting)
    assert failing.returncode == 2 and '--storage-options is not valid JSON' in failing.stderr
    assert converted.returncode == 0, converted.stderr[-3000:]
    assert_same_points(read_metrics(repo), expected_metrics(logdirs[0][1]))
    assert _staging_left(tmp_path) == [] and _staging_left(tmp_path / 'new') == []


# --- conversions racing ------------------------------------------------------------------------------

# (writers, seconds between their starts): at once; during the launchers' start; one mid-conversion
ROUNDS = ((2, 0.0), (3, 0.4), (3, 1.5))


@pytest.fixture(scope='module')
def converted_repo(tmp_path_factory, logdirs):
    """A repo holding one conversion (logdir 3), so that every part a conversion writes exists."""
    tmp = tmp_path_factory.mktemp('converted')
    repo = str(tmp / 'repo')
    result = _convert(logdirs[3][0], repo, str(tmp / 'skipped.jsonl'))
    assert result.returncode == 0, result.stderr
    return repo


@pytest.mark.slow
@pytest.mark.parametrize('existing', [False, True], ids=['new-repo', 'existing-repo'])
def test_conversions_racing_into_one_repo_all_land(tmp_path, logdirs, converted_repo, existing):
    for round_, (writers, stagger) in enumerate(ROUNDS):
        parent = tmp_path / f'round{round_}'
        repo = str(parent / 'repo')
        written = []
        if existing:  # the repo exists, with runs, before the race (a copy: Aim keeps no path in it)
            shutil.copytree(converted_repo, repo)
            written.append(logdirs[3][1])
        processes = []
        for i in range(writers):
            if i:
                time.sleep(stagger)
            processes.append(_start(logdirs[i][0], repo, str(tmp_path / f'skipped{round_}_{i}.jsonl')))
            written.append(logdirs[i][1])
        results = [_finish(process) for process in processes]
        for i, result in enumerate(results):
            assert result.returncode == 0, f'round {round_} writer {i}: {result.stderr[-3000:]}'
            assert 'Traceback' not in result.stderr
        assert_same_points(read_metrics(repo), expected_metrics(_union(*written)))
        runs = read_runs(repo)
        assert {run['experiment'] for run in runs.values()} == {EXPERIMENT}
        assert _staging_left(tmp_path) == [] and sorted(os.listdir(parent)) == ['repo']


# --- the index held by another process ----------------------------------------------------------------

HOLD_INDEX = '''
import sys
from aim.storage.rockscontainer import RocksContainer
container = RocksContainer(sys.argv[1], read_only=False)  # takes the index's RocksDB LOCK
print('held', flush=True)
sys.stdin.readline()
container.close()
'''


@contextlib.contextmanager
def index_held(repo: str):
    """Another process holds the repo's index open for writing until the block ends."""
    holder = subprocess.Popen([sys.executable, '-c', HOLD_INDEX, os.path.join(repo, '.aim', 'meta', 'index')],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        yield holder
    finally:
        holder.stdin.write('\n')
        holder.stdin.close()
        holder.wait(60)


def _names_in_sqlite(repo: str) -> List[str]:
    with contextlib.closing(sqlite3.connect(os.path.join(repo, '.aim', 'run_metadata.sqlite'))) as db:
        return sorted(name for (name,) in db.execute('SELECT name FROM run'))


@pytest.mark.slow
def test_index_runs_waits_for_an_index_another_process_holds(tmp_path, logdirs):
    """``index_runs`` waits while another writer holds the index, and indexes once it is free."""
    from connectors.aim_sink import index_runs

    repo = str(tmp_path / 'repo')
    result = _convert(logdirs[0][0], repo, str(tmp_path / 'skipped.jsonl'))
    assert result.returncode == 0, result.stderr
    hashes = os.listdir(os.path.join(repo, '.aim', 'meta', 'chunks'))
    outcome = {}
    with index_held(repo) as holder:
        worker = threading.Thread(target=lambda: outcome.setdefault('indexed', index_runs(repo, hashes)))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and not outcome  # waiting, not failed
    worker.join(60)
    assert outcome == {'indexed': len(hashes)} and holder.returncode == 0
    assert sorted(run.hash for run in Repo.from_path(repo).iter_runs()) == sorted(hashes)


@contextlib.contextmanager
def index_held_for_conversion(repo: str, logdir: str, tmp_path, wait: str = '1'):
    """Converts ``logdir`` into ``repo`` (created first) while another process holds the index for the
    whole conversion (``RUNFERRY_INDEX_WAIT_SECONDS=wait``); yields the result, the index still held."""
    Repo.from_path(repo, init=True)
    with index_held(repo):
        yield _convert(logdir, repo, str(tmp_path / 'skipped.jsonl'), env={'RUNFERRY_INDEX_WAIT_SECONDS': wait})


@pytest.mark.slow
def test_an_index_held_throughout_is_one_report_line_and_the_runs_are_written(tmp_path, logdirs):
    """The start check does not take the index's lock (it used to: "cannot be opened as an Aim repo",
    exit 2), and an index still held after the wait is one line of the report, not a traceback."""
    repo = str(tmp_path / 'repo')
    logdir, written = logdirs[0]
    with index_held_for_conversion(repo, logdir, tmp_path) as result:
        assert result.returncode == 0, result.stderr
        assert 'Traceback' not in result.stderr and 'rror' not in result.stderr
        index = os.path.join(repo, '.aim', 'meta', 'index')
        assert f'2 run(s) written but not yet indexed: {index} stayed locked' in result.stdout
        assert _names_in_sqlite(repo) == sorted(name for name, _ in written)  # the props are written
    # the runs are complete: ``aim up``'s index manager indexes them, as runs Aim's own Run wrote
    with ui_server.aim_up(repo) as url:
        assert _wait_for_listed(url, sorted(name for name, _ in written))
    assert_same_points(read_metrics(repo), expected_metrics(written))


def _wait_for_listed(url: str, names: List[str], timeout: float = 60) -> bool:
    """Whether aim up's HTTP API lists exactly ``names`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        listed = sorted(run['props']['name'] for run in ui_server.search_runs(url).values())
        if listed == names:
            return True
        if time.monotonic() > deadline:
            print('listed by aim up:', listed)
            return False
        time.sleep(1)


@pytest.mark.slow
def test_a_conversion_while_aim_up_serves_the_repo(tmp_path):
    """``aim up``'s index manager indexes new runs while they are written, holding the index's lock each
    time: the conversion's own index step waits its turn. Every run shows in aim up's HTTP API."""
    repo = str(tmp_path / 'repo')
    logdir = str(tmp_path / 'served')
    written = _write_logdir(logdir, 'served', runs=40, steps=5)  # enough runs to keep its manager busy
    Repo.from_path(repo, init=True)
    with ui_server.aim_up(repo) as url:
        result = _convert(logdir, repo, str(tmp_path / 'skipped.jsonl'))
        assert result.returncode == 0, result.stderr[-3000:]
        assert 'Traceback' not in result.stderr and 'not yet indexed' not in result.stdout
        assert _wait_for_listed(url, sorted(name for name, _ in written))
    assert_same_points(read_metrics(repo), expected_metrics(written))


# --- start checks: what the end writes must be writable ----------------------------------------------

@contextlib.contextmanager
def immutable(path: str):
    """``chattr +i``: refused to root as to anyone (permission bits would not stop root)."""
    subprocess.run(['chattr', '+i', path], check=True)
    try:
        yield
    finally:
        subprocess.run(['chattr', '-i', path], check=True)


def _snapshot(repo: str):
    aim_dir = os.path.join(repo, '.aim')
    with open(os.path.join(aim_dir, 'run_metadata.sqlite'), 'rb') as db:
        return sorted(os.listdir(os.path.join(aim_dir, 'meta', 'chunks'))), hashlib.sha256(db.read()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize('part', ['run_metadata.sqlite', 'meta/chunks', 'seqs/chunks', 'locks'])
def test_an_unwritable_part_of_the_repo_stops_the_start_check(tmp_path, converted_repo, logdirs, part):
    target = os.path.normpath(os.path.join(converted_repo, '.aim', part))
    before = _snapshot(converted_repo)
    with immutable(target):
        result = _convert(logdirs[0][0], converted_repo, str(tmp_path / 'skipped.jsonl'))
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [f'tf_to_aim: error: --repo {converted_repo} is not writable: '
                                          f'{target} is read-only']
    assert 'Traceback' not in result.stderr
    assert _snapshot(converted_repo) == before  # nothing written


# --- SQLite props written beside another writer ------------------------------------------------------

def test_props_are_written_when_another_writer_creates_the_same_experiment_first(tmp_path):
    """Another process commits the experiment (a unique name in Aim's schema) between this writer's
    reading the existing rows and its commit: the commit fails once, and is tried again, finding it."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from connectors.aim_sink import RunProps, index_runs

    repo = str(tmp_path / 'repo')
    early_repo.create_repo(repo)
    database = os.path.join(repo, '.aim', 'run_metadata.sqlite')

    def other_writer_commits_first(session, flush_context, instances):
        with contextlib.closing(sqlite3.connect(database)) as other:  # as another process would
            other.execute("INSERT INTO experiment (uuid, name, is_archived) VALUES ('other', 'shared', 0)")
            other.commit()

    event.listen(Session, 'before_flush', other_writer_commits_first, once=True)
    try:
        index_runs(repo, [], [RunProps('a' * 24, 'run-a', 'shared', tags=('t',), created_at=1.7e9)])
    finally:
        if event.contains(Session, 'before_flush', other_writer_commits_first):
            event.remove(Session, 'before_flush', other_writer_commits_first)
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute('SELECT run.name, experiment.uuid FROM run JOIN experiment '
                          'ON run.experiment_id = experiment.id').fetchall() == [('run-a', 'other')]
        assert db.execute('SELECT count(*) FROM experiment').fetchone() == (1,)
