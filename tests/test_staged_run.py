"""A new run built in a staging directory and published into the repo whole (``connectors.aim_staging``):
nothing of it in the repo until its close, only a closed database's files after it, read back through
Aim's SDK equal to a run written in the repo; a publication that fails leaves no run; a re-run of a
published run is written in place, equal; a stage that fills up sends the run, and the later ones,
into the repo (a real full tmpfs, as tests/test_full_disk.py mounts one)."""
from __future__ import annotations

import os

import pytest

from connectors import aim_staging
from connectors.aim_sink import AimRunWriter, index_runs, open_repo, run_hash_for
from runmodel import METRIC, RunData, RunSpec, Series
from tests.readback import read_metrics, read_runs
from tests.test_full_disk import tmpfs

PARTS = ('meta', 'seqs')


def small_run(name: str, points: int = 30, series: int = 3) -> RunData:
    all_series = []
    for s in range(series):
        one = Series(METRIC, f'metric_{s}', {'subset': 'train'}, source='test')
        for step in range(points):
            one.append(step, 1_700_000_000.0 + step, float(step * (s + 1)) / 7, step)
        all_series.append(one)
    return RunData(RunSpec(identity=f'staged-{name}', name=name, experiment='staged',
                           attributes={'lr': 0.25, 'layers': [1, 2]}), all_series)


def new_repo(path) -> str:
    open_repo(str(path), create=True)
    return str(path)


def databases(repo_path: str, run_hash: str):
    return [os.path.join(repo_path, '.aim', part, 'chunks', run_hash) for part in PARTS]


def index(repo_path: str, written) -> None:
    index_runs(repo_path, [w.hash for w in written], [w.props for w in written],
               {w.hash: w.meta_records for w in written})


def test_a_staged_run_appears_at_its_close_whole_and_reads_back_as_one_written_in_the_repo(tmp_path):
    staging = tmp_path / 'stage'
    staging.mkdir()
    staged_repo, in_repo = new_repo(tmp_path / 'staged'), new_repo(tmp_path / 'in_repo')
    data = small_run('a')
    run_hash = run_hash_for(data.spec.identity)

    writer = AimRunWriter(staged_repo, staging=str(staging))
    writer.prepare(data)  # opened ahead, as WriteRunsFn does: built in the stage, not in the repo
    run = writer._opening[run_hash].result()
    assert run.stage is not None and not any(map(os.path.exists, databases(staged_repo, run_hash)))
    written = writer.write(data)
    for database in databases(staged_repo, run_hash):
        names = sorted(os.listdir(database))
        assert 'LOCK' not in names and 'LOG' not in names and 'CURRENT' in names, names
        assert all(aim_staging.PUBLISHED(name, os.path.join(database, name)) for name in names), names
        assert not any(name == 'IDENTITY' or name.startswith('OPTIONS-') for name in names), names
    assert os.listdir(staging) == []  # the stage is removed
    index(staged_repo, [written])
    index(in_repo, [AimRunWriter(in_repo, staging=None).write(small_run('a'))])
    assert read_metrics(staged_repo) == read_metrics(in_repo)
    assert read_runs(staged_repo) == read_runs(in_repo)
    assert read_runs(staged_repo)['a']['attributes'] == {'lr': 0.25, 'layers': [1, 2]}

    # a re-run of the published run: in place (it is in the repo), the same run
    rerun = AimRunWriter(staged_repo, staging=str(staging))
    again = rerun.write(small_run('a'))
    index(staged_repo, [again])
    assert read_metrics(staged_repo) == read_metrics(in_repo)
    assert read_runs(staged_repo) == read_runs(in_repo)


def test_a_publication_that_fails_leaves_no_run_and_a_rerun_publishes_it(tmp_path):
    staging = tmp_path / 'stage'
    staging.mkdir()
    repo_path = new_repo(tmp_path / 'repo')
    data = small_run('b')
    run_hash = run_hash_for(data.spec.identity)
    # the meta database cannot be published (a file where its temporary directory goes): the seqs one is,
    # then removed again
    blocker = os.path.join(repo_path, '.aim', 'meta', 'runferry-publish')
    with open(blocker, 'w'):
        pass
    writer = AimRunWriter(repo_path, staging=str(staging))
    with pytest.raises(OSError):
        writer.write(data)
    assert not any(map(os.path.exists, databases(repo_path, run_hash)))
    assert os.listdir(staging) == []
    assert read_runs(repo_path) == {}

    os.remove(blocker)
    index(repo_path, [writer.write(small_run('b'))])
    assert read_metrics(repo_path) == {('b', '{"subset": "train"}', f'metric_{s}'):
                                       [(step, step * (s + 1) / 7, 1_700_000_000.0 + step) for step in range(30)]
                                       for s in range(3)}


def test_a_run_that_outgrows_its_stage_is_written_in_the_repo_and_so_are_the_next(tmp_path):
    repo_path = new_repo(tmp_path / 'repo')
    with tmpfs(tmp_path / 'tiny', '1m') as tiny:
        writer = AimRunWriter(repo_path, staging=str(tiny))
        big, small = small_run('big', points=20_000, series=4), small_run('small')
        written = [writer.write(big), writer.write(small)]
        assert writer.staging is None
        assert os.listdir(tiny) == []
    index(repo_path, written)
    metrics = read_metrics(repo_path)
    assert len(metrics[('big', '{"subset": "train"}', 'metric_3')]) == 20_000
    assert sorted(read_runs(repo_path)) == ['big', 'small']


def test_stages_of_writers_gone_are_removed_and_a_live_ones_kept(tmp_path):
    staging = tmp_path / 'stage'
    staging.mkdir()
    gone = staging / 'runferry-stage-999999999-abc'  # above any pid_max
    alive = staging / f'runferry-stage-{os.getpid()}-abc'
    for stage in (gone, alive):
        (stage / 'meta').mkdir(parents=True)
    AimRunWriter(new_repo(tmp_path / 'repo'), staging=str(staging))
    assert sorted(os.listdir(staging)) == [alive.name]


def test_staging_is_chosen_by_the_environment():
    assert aim_staging.staging_root({aim_staging.STAGING_ENV: 'off'}) is None
    with pytest.raises(ValueError, match='RUNFERRY_AIM_STAGING=/no/such/dir'):
        aim_staging.staging_root({aim_staging.STAGING_ENV: '/no/such/dir'})


def test_a_bad_staging_directory_stops_the_command_before_any_work(tmp_path, monkeypatch):
    """Found by the destination's start check (exit 2, one line), not by the writer in a worker."""
    from pipelines.common import UsageError
    from pipelines.destinations.aim import AimDestination

    monkeypatch.setenv(aim_staging.STAGING_ENV, str(tmp_path / 'missing'))
    with pytest.raises(UsageError, match='RUNFERRY_AIM_STAGING=.*missing: not a writable directory'):
        AimDestination(str(tmp_path / 'repo')).check()
    assert not os.path.exists(tmp_path / 'repo')
