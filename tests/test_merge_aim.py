"""``python -m pipelines.merge_aim``: a runferry-built Aim repo (local, or uploaded to S3) merged into a
repo that ``aim up`` serves, read back through ``aim up``'s HTTP API and Aim's SDK; merged again (nothing
added); killed with SIGKILL at the worst moments and run again (the same end state); bad flags (exit 2,
nothing written).

The source and target repos are written by the real command (``python -m pipelines.tf_to_aim``) from
logdirs written by tensorboardX; the source's rows are then edited through Aim's own SQLite models (an
archived run, a tag, a description), as Aim's UI edits them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from typing import Dict, List, Tuple

import numpy as np
import pytest

from pipelines import merge_aim
from pipelines.common import UsageError
from tests import ui_server
from tests.readback import read_metrics, read_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# every run: Aim's search hides archived runs unless the query names run.archived
ALL_RUNS = 'run.archived == True or run.archived == False'
SOURCE_RUNS = ('run_a', 'run_b', 'run_c')
OWN_RUN = 'own_run'


def _python(module: str, *args: str, env: Dict[str, str] = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _merge(*args: str, env: Dict[str, str] = None) -> subprocess.CompletedProcess:
    return _python('pipelines.merge_aim', *args, env=env)


def _convert(*logdirs_and_repos: Tuple[str, str]) -> None:
    """``python -m pipelines.tf_to_aim`` for each (logdir, repo), all at once."""
    processes = [subprocess.Popen([sys.executable, '-m', 'pipelines.tf_to_aim', '--logdir', logdir, '--repo', repo,
                                   '--skipped', repo + '.skipped.jsonl'], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for logdir, repo in logdirs_and_repos]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]


@pytest.fixture(scope='module')
def repos(tmp_path_factory):
    """(source repo, target repo template, the source's runs by name as the SDK reads them): the source
    holds three converted runs, one archived, one tagged and described; the target one run of its own."""
    from aim import Repo
    from samples.tensorboard_logs import write_tbx

    root = tmp_path_factory.mktemp('merge')
    for position, name in enumerate(SOURCE_RUNS):
        write_tbx(str(root / 'source_logs' / name), ('loss', 'acc'), 12, salt=position,
                  start_time=1_700_000_000.0 + 100 * position)
    write_tbx(str(root / 'own_logs' / OWN_RUN), ('loss',), 8, salt=9, start_time=1_690_000_000.0)
    source, target = str(root / 'source'), str(root / 'target')
    _convert((str(root / 'source_logs'), source), (str(root / 'own_logs'), target))
    repo = Repo.from_path(source)
    by_name = {run.name: run for run in repo.iter_runs()}
    rows = repo.structured_db
    rows.find_run(by_name['run_a'].hash).archived = True
    rows.find_run(by_name['run_b'].hash).add_tag('backfill')
    rows.find_run(by_name['run_b'].hash).description = 'converted on Dataflow'
    _forget_repo(source)
    return source, target


def _rows(repo_path: str) -> Dict[str, Tuple]:
    """{run name: (experiment, archived, tags, description, created_at)} as Aim's SQLite models hold them."""
    from aim import Repo

    repo = Repo.from_path(repo_path)
    return {row.name: (row.experiment, row.archived, sorted(row.tags), row.description,
                       row.created_at) for row in repo.structured_db.runs()}


def _repo_state(repo_path: str):
    """What a reader sees: every run (props, attributes, times) and every metric, through the SDK (a
    ``Repo`` opened afresh: one kept from an earlier read would answer from its caches)."""
    _forget_repo(repo_path)
    try:
        return read_runs(repo_path), read_metrics(repo_path), _rows(repo_path)
    finally:
        _forget_repo(repo_path)


def _forget_repo(repo_path: str) -> None:
    """Close this process's ``Repo`` of the path, if any, and drop it from Aim's pool."""
    from aim import Repo
    from aim.sdk.utils import clean_repo_path

    repo = Repo._pool.pop(clean_repo_path(repo_path), None)
    if repo is not None:
        repo.close()


def _files(repo_path: str) -> Dict[str, Tuple[int, int]]:
    """Every file of the repo: {relative path: (size, mtime_ns)}."""
    found = {}
    for directory, _, names in os.walk(repo_path):
        for name in names:
            path = os.path.join(directory, name)
            stat = os.stat(path)
            found[os.path.relpath(path, repo_path)] = (stat.st_size, stat.st_mtime_ns)
    return found


def _expected(source: str, target_template: str):
    """The state of an uninterrupted merge: the target's own runs and the source's, each as it was."""
    own, merged = _repo_state(target_template), _repo_state(source)
    return tuple({**own_part, **merged_part} for own_part, merged_part in zip(own, merged))


def _metric_traces(url: str) -> Dict[Tuple[str, str, str], Tuple[List[int], List[float]]]:
    """{(run name, context JSON, metric): (steps, values)} from aim up's metric search (what its charts draw)."""
    query = urllib.parse.urlencode({'q': ALL_RUNS, 'report_progress': 'false', 'p': 500})
    with urllib.request.urlopen(f'{url}/api/runs/search/metric/?{query}', timeout=60) as response:
        runs = ui_server.decode_run_search(response.read())
    traces = {}
    for run in runs.values():
        for trace in run['traces']:
            steps = np.frombuffer(trace['iters']['blob'], dtype=trace['iters']['dtype']).tolist()
            values = np.frombuffer(trace['values']['blob'], dtype=trace['values']['dtype']).tolist()
            key = (run['props']['name'], json.dumps(trace['context'], sort_keys=True), trace['name'])
            traces[key] = (steps, values)
    return traces


def _wait_for_runs(url: str, names: List[str], timeout: float = 90.0) -> Dict[str, dict]:
    """aim up's runs, once all of ``names`` are listed (its index manager indexes new runs within seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = {run['props']['name']: run for run in ui_server.search_runs(url, ALL_RUNS).values()}
        if set(names) <= set(runs) or time.monotonic() > deadline:
            return runs
        time.sleep(1)


def _count(stdout: str, label: str) -> int:
    import re

    match = re.search(rf'^  {label}\s+([\d,]+)$', stdout, re.M)
    assert match, stdout
    return int(match.group(1).replace(',', ''))


# ------------------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_merge_from_s3_into_a_served_repo(repos, s3_server, s3fs_client, tmp_path):
    source, template = repos
    target = str(tmp_path / 'live')
    shutil.copytree(template, target, symlinks=True)
    bucket = f'runferry-merge-{uuid.uuid4().hex[:12]}'
    s3fs_client.mkdir(bucket)
    s3fs_client.put(source, f'{bucket}/repo', recursive=True)  # a bucket repo's layout: PREFIX/.aim/...
    url_of_source = f's3://{bucket}/repo'
    expected_runs, expected_metrics, expected_rows = _expected(source, template)
    env = {**s3_server.env, 'RUNFERRY_INDEX_WAIT_SECONDS': '2'}

    with ui_server.aim_up(target, timeout=180) as url:
        assert sorted(_wait_for_runs(url, [OWN_RUN])) == [OWN_RUN]
        before = _files(target)

        dry = _merge('--from', url_of_source, '--into', target, '--dry-run', env=env)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert dry.stdout.count('would be merged') == 3 and all(name in dry.stdout for name in SOURCE_RUNS)
        assert _files(target) == before  # a dry run writes nothing

        merged = _merge('--from', url_of_source, '--into', target, env=env)
        assert merged.returncode == 0, merged.stderr[-3000:]
        assert (_count(merged.stdout, 'runs merged'), _count(merged.stdout, 'runs present'),
                _count(merged.stdout, 'runs skipped')) == (3, 0, 0)

        listed = _wait_for_runs(url, [OWN_RUN, *SOURCE_RUNS])
        assert sorted(listed) == sorted([OWN_RUN, *SOURCE_RUNS])
        for name in SOURCE_RUNS:
            props = listed[name]['props']
            assert props['experiment']['name'] == expected_runs[name]['experiment']
            assert abs(props['creation_time'] - expected_runs[name]['creation_time']) < 1e-3
            assert props['archived'] is (name == 'run_a')
            assert [tag['name'] for tag in props['tags']] == (['backfill'] if name == 'run_b' else [])
        traces = _metric_traces(url)
        assert sorted({key[0] for key in traces}) == sorted([OWN_RUN, *SOURCE_RUNS])
        for key, points in expected_metrics.items():
            assert traces[key] == ([s for s, _, _ in points], [v for _, v, _ in points]), key

    # through Aim's SDK: the source's runs as the source holds them, the target's own untouched
    assert _repo_state(target) == (expected_runs, expected_metrics, expected_rows)
    assert _rows(target)['run_b'][3] == 'converted on Dataflow'

    # merged again: nothing added, nothing of the repo rewritten
    files = {path: stat for path, stat in _files(target).items() if not path.startswith('.aim/meta/index')}
    again = _merge('--from', url_of_source, '--into', target, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (_count(again.stdout, 'runs merged'), _count(again.stdout, 'runs present')) == (0, 3)
    assert {path: stat for path, stat in _files(target).items() if not path.startswith('.aim/meta/index')} == files
    assert _repo_state(target) == (expected_runs, expected_metrics, expected_rows)


_KILLER = '''
import os, signal, sys
from connectors import aim_merge, aim_run_install
from pipelines import merge_aim

where, nth = sys.argv[1], int(sys.argv[2])
calls = []

def kill_on(original, counts):
    def wrapped(*args, **kwargs):
        if counts(*args):
            calls.append(1)
            if len(calls) == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapped

if where == 'rename':  # a container renamed into place
    aim_run_install._rename_if_absent = kill_on(aim_run_install._rename_if_absent, lambda *a: True)
else:  # the index step (index_runs is called with rows only, then with the runs to index)
    aim_merge.index_runs = kill_on(aim_merge.index_runs, lambda repo, hashes, *rest: bool(list(hashes)))
sys.exit(merge_aim.run(sys.argv[3:]))
'''


@pytest.mark.slow
def _records(repo_path: str, kind: str, run_hash: str) -> list:
    """Every record of a run's container, read through Aim's own ``RocksContainer``."""
    from aim.storage.rockscontainer import RocksContainer
    from aim.storage.utils import BLOB

    container = RocksContainer(os.path.join(repo_path, '.aim', kind, 'chunks', run_hash), read_only=True,
                               skip_read_optimization=True)
    try:
        return [(key, bytes(value.load()) if isinstance(value, BLOB) else value) for key, value in container.items()]
    finally:
        container.close()


def test_kill_during_a_merge_then_rerun_ends_as_an_uninterrupted_merge(repos, tmp_path):
    from aim import Repo

    source, template = repos
    target = str(tmp_path / 'target')
    shutil.copytree(template, target, symlinks=True)
    own_hashes = set(os.listdir(os.path.join(target, '.aim', 'meta', 'chunks')))
    source_hashes = set(os.listdir(os.path.join(source, '.aim', 'meta', 'chunks')))

    def killed(where: str, nth: int) -> None:
        done = subprocess.run([sys.executable, '-c', _KILLER, where, str(nth), '--from', source, '--into', target],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == -9, (done.returncode, done.stderr[-3000:])

    # SIGKILL between the second run's two renames: its seqs container is in place, its meta is not
    killed('rename', 4)
    placed = set(os.listdir(os.path.join(target, '.aim', 'meta', 'chunks')))
    assert len(placed - own_hashes) == 1 and placed - own_hashes < source_hashes
    assert len(set(os.listdir(os.path.join(target, '.aim', 'seqs', 'chunks'))) - own_hashes) == 2
    assert os.listdir(os.path.join(target, '.aim', '.runferry-merge'))  # the staged run, left by the kill
    # every run Aim finds (by its meta container; aim up would index it) is whole, with its row
    reader = Repo.from_path(target)
    for run_hash in placed - own_hashes:
        assert reader.structured_db.find_run(run_hash).name in SOURCE_RUNS
        for kind in ('meta', 'seqs'):
            assert _records(target, kind, run_hash) == _records(source, kind, run_hash)
    _forget_repo(target)

    # SIGKILL in the re-run's index step: every run placed, none indexed
    killed('index', 1)
    assert set(os.listdir(os.path.join(target, '.aim', 'meta', 'chunks'))) == own_hashes | source_hashes

    finished = _merge('--from', source, '--into', target)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert _count(finished.stdout, 'runs skipped') == 0
    assert _repo_state(target) == _expected(source, template)
    assert os.listdir(os.path.join(target, '.aim', '.runferry-merge')) == []  # the dead merges' staging is gone


@pytest.mark.slow
def test_same_hash_with_other_records_is_not_overwritten(repos, tmp_path):
    source, template = repos
    target = str(tmp_path / 'target')
    shutil.copytree(template, target, symlinks=True)
    assert _merge('--from', source, '--into', target).returncode == 0
    state = _repo_state(target)
    changed = str(tmp_path / 'changed')
    shutil.copytree(source, changed, symlinks=True)
    run_hash = next(run['hash'] for name, run in state[0].items() if name == 'run_c')
    # Aim's own writer, after the merge: the same run, other records (in a process of its own, which
    # removes the run's progress files when it ends)
    edit = subprocess.run([sys.executable, '-c', 'import sys; from aim import Repo, Run; '
                           'run = Run(sys.argv[2], repo=Repo.from_path(sys.argv[1])); '
                           'run["note"] = "edited after the merge"; run.close()', changed, run_hash],
                          capture_output=True, text=True, timeout=120)
    assert edit.returncode == 0, edit.stderr[-3000:]
    files = _files(target)

    again = _merge('--from', changed, '--into', target, '--skipped', str(tmp_path / 'skipped.jsonl'),
                   '--report', str(tmp_path / 'report.json'))
    assert again.returncode == 1
    assert (_count(again.stdout, 'runs present'), _count(again.stdout, 'runs skipped')) == (2, 1)
    assert again.stderr.strip().splitlines() == [
        f'merge_aim: error: 1 run not merged; the first: {changed} run {run_hash} (run_c): run hash exists in the '
        'target with other contents (not overwritten)']
    letter = json.loads((tmp_path / 'skipped.jsonl').read_text())
    assert letter['kind'] == 'run' and letter['detail'].endswith(f'/chunks/{run_hash} exists in the target with other '
                                                                 'records')
    report = json.loads((tmp_path / 'report.json').read_text())
    assert {key: report['counters'][key] for key in ('runs_read', 'runs_merged', 'runs_present', 'runs_skipped')} \
        == {'runs_read': 3, 'runs_merged': 0, 'runs_present': 2, 'runs_skipped': 1}
    assert _files(target) == files and _repo_state(target) == state


def test_rows_are_written_as_the_source_holds_them(repos, tmp_path):
    """The source's rows, read from its SQLite file (``connectors.aim_run_rows``) and written by the index
    step's ``index_runs``: archived flag, tags, description, experiment, times, to the microsecond."""
    from connectors.aim_index import index_runs
    from connectors.aim_run_rows import read_run_props

    source, template = repos
    target = str(tmp_path / 'target')
    shutil.copytree(template, target, symlinks=True)
    props = read_run_props(os.path.join(source, '.aim', 'run_metadata.sqlite'))
    assert sorted(p.name for p in props.values()) == sorted(SOURCE_RUNS)
    index_runs(target, [], props.values())
    rows, wanted = _rows(target), _rows(source)
    _forget_repo(target)
    _forget_repo(source)
    assert {name: rows[name] for name in SOURCE_RUNS} == wanted
    assert wanted['run_a'][1] is True and wanted['run_b'][2:4] == (['backfill'], 'converted on Dataflow')


# ------------------------------------------------------------------------------------------- bad flags

def test_flags_are_checked_before_anything(repos, tmp_path):
    source, template = repos
    missing = str(tmp_path / 'nothing-here')
    plain_dir = str(tmp_path)

    def usage(*argv: str) -> str:
        with pytest.raises(UsageError) as error:
            merge_aim.check(merge_aim.parse(list(argv)))
        return str(error.value)

    assert usage('--from', source, '--into', template, '--dryrun') == 'unknown flag --dryrun; did you mean --dry-run?'
    assert usage('--from', missing, '--into', template) == f'--from {missing} does not exist'
    assert usage('--from', plain_dir, '--into', template) == \
        f'--from {plain_dir} is not an Aim repo: it has no .aim/run_metadata.sqlite'
    assert usage('--from', source, '--into', plain_dir).startswith(f'--into {plain_dir} is not an Aim repo')
    assert usage('--from', source, '--into', 'aim://127.0.0.1:1').startswith('--into aim://127.0.0.1:1 must be a local')
    assert usage('--from', template, '--into', template) == '--from and --into are the same repo'
    message = usage('--from', 'https://alice:s3cret@127.0.0.1:1/repo', '--into', template)
    assert message.startswith('--from https://alice:***@127.0.0.1:1/repo ') and 's3cret' not in message


@pytest.mark.slow
def test_mistyped_flag_or_missing_source_exits_2_and_writes_nothing(repos, tmp_path):
    source, template = repos
    target = str(tmp_path / 'target')
    shutil.copytree(template, target, symlinks=True)
    before = _files(target)
    for argv, line in (
            (['--from', source, '--int', target], 'merge_aim: error: unknown flag --int; did you mean --into?'),
            (['--from', str(tmp_path / 'missing'), '--into', target],
             f'merge_aim: error: --from {tmp_path / "missing"} does not exist')):
        done = _merge(*argv)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [line]
        assert done.stdout == ''
    assert _files(target) == before
    assert not os.path.exists(target + '.merge-skipped.jsonl')
