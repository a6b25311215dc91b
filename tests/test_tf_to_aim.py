"""tf_to_aim end to end on DirectRunner: real writers in, Aim SDK read-back out."""
import json
import os

import pytest

from pipelines import tf_to_aim
from samples.tensorboard_logs import write_seed_logdir, write_tbx, write_tf2
from tests.readback import assert_same_points, expected_metrics, read_metrics, read_runs

pytestmark = pytest.mark.slow


def convert(logdir, repo, *extra):
    return tf_to_aim.run(['--logdir', str(logdir), '--repo', str(repo), *extra])


@pytest.fixture(scope='module')
def seed_tbx(tmp_path_factory):
    root = tmp_path_factory.mktemp('seed_tbx') / 'logs'
    return root, write_seed_logdir(str(root), steps=40, writer='tbx')


@pytest.fixture(scope='module')
def seed_tf2(tmp_path_factory):
    root = tmp_path_factory.mktemp('seed_tf2') / 'logs'
    return root, write_seed_logdir(str(root), steps=40, writer='tf2')


@pytest.mark.parametrize('fixture', ['seed_tbx', 'seed_tf2'])
def test_seed_logdir_converts_losslessly(fixture, request, tmp_path):
    root, seed = request.getfixturevalue(fixture)
    repo = tmp_path / 'aim'
    assert convert(root, repo) == 0
    assert_same_points(read_metrics(str(repo)), expected_metrics(seed))

    runs = read_runs(str(repo))
    assert sorted(runs) == ['group_1/run_2', 'group_1/run_3', 'run_1']
    for name, run in runs.items():
        assert run['experiment'] == 'logs'
        assert run['attributes']['tensorboard_logdir'] == os.path.join(str(root), name)
        times = [t for (r, _), points in seed.items() if r == name for _, t in points.values()]
        assert run['creation_time'] == pytest.approx(min(times), abs=1e-3)
        assert run['end_time'] == pytest.approx(max(times), abs=1e-3)
        assert run['active'] is False

    skipped = [json.loads(line) for line in open(f'{repo}.skipped.jsonl')]
    ignored_sources = {s['source'] for s in skipped if 'unorganized' in s['reason']}
    assert ignored_sources == {str(p) for p in root.glob('events.out.tfevents*')} | \
        {str(p) for p in (root / 'group_1').glob('events.out.tfevents*')}


def test_flat_makes_every_event_directory_a_run(seed_tf2, tmp_path):
    root, seed = seed_tf2
    repo = tmp_path / 'aim'
    assert convert(root, repo, '--flat', '--experiment', 'sweep') == 0
    runs = read_runs(str(repo))
    assert sorted(runs) == ['group_1/run_2/train', 'group_1/run_2/validate', 'group_1/run_3', 'run_1']
    assert {r['experiment'] for r in runs.values()} == {'sweep'}
    metrics = read_metrics(str(repo))
    # flat runs have no contexts; run_2's own files (lr) are unorganized under --flat
    assert {ctx for _, ctx, _ in metrics} == {'{}'}
    train = seed[('group_1/run_2', 'train')]
    assert len(metrics[('group_1/run_2/train', '{}', 'loss')]) == len({s for t, s in train if t == 'loss'})


def test_two_worker_processes_give_the_same_repo(seed_tbx, tmp_path):
    root, seed = seed_tbx
    repo = tmp_path / 'aim'
    assert convert(root, repo, '--direct_num_workers', '2', '--direct_running_mode', 'multi_processing') == 0
    assert_same_points(read_metrics(str(repo)), expected_metrics(seed))


def test_rerun_adds_nothing_and_new_events_are_appended(tmp_path):
    root = tmp_path / 'logs'
    first = write_tbx(str(root / 'run_a'), ('loss',), 30)
    repo = tmp_path / 'aim'
    assert convert(root, repo) == 0
    before_runs, before = read_runs(str(repo)), read_metrics(str(repo))

    assert convert(root, repo) == 0
    assert read_runs(str(repo)).keys() == before_runs.keys()
    assert read_metrics(str(repo)) == before
    assert read_runs(str(repo))['run_a']['hash'] == before_runs['run_a']['hash']

    # training resumed: a new event file with later steps, and a new context
    later = write_tf2(str(root / 'run_a'), ('loss',), 45, start_time=1_700_000_100.0)
    write_tbx(str(root / 'run_a' / 'eval'), ('acc',), 5)
    assert convert(root, repo) == 0
    after = read_metrics(str(repo))
    assert len(read_runs(str(repo))) == 1
    steps = [s for s, _, _ in after[('run_a', '{}', 'loss')]]
    assert steps == list(range(45))  # steps 0..29 were in both files: the later file's points win
    assert after[('run_a', '{}', 'loss')][10][1] == later[('loss', 10)][0]
    assert len(after[('run_a', '{"entry": "eval"}', 'acc')]) == 5
    del first


def test_dry_run_prints_the_plan_and_writes_nothing(seed_tbx, tmp_path, capsys):
    root, _ = seed_tbx
    repo = tmp_path / 'aim'
    assert convert(root, repo, '--dry-run') == 0
    out = capsys.readouterr().out
    assert 'run group_1/run_2' in out and 'context train' in out and 'context validate' in out
    assert 'ignored' in out
    assert not repo.exists()


@pytest.mark.parametrize('argv, message', [
    (['--logdir', '/nonexistent/logs', '--repo', 'X'], '/nonexistent/logs does not exist'),
    (['--logdir', '', '--repo', 'X'], '--logdir is empty'),
    (['--logdir', '.', '--repo', 'X', '--storage-options', '{bad'], '--storage-options is not valid JSON'),
])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tf_to_aim.run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_logdir_without_event_files_is_a_usage_error(tmp_path, capsys):
    (tmp_path / 'logs').mkdir()
    (tmp_path / 'logs' / 'notes.txt').write_text('no events here')
    with pytest.raises(SystemExit) as exit_info:
        convert(tmp_path / 'logs', tmp_path / 'aim')
    assert exit_info.value.code == 2
    assert 'holds no event files' in capsys.readouterr().err


def test_unwritable_repo_is_a_usage_error(seed_tbx, tmp_path, capsys):
    root, _ = seed_tbx
    not_a_dir = tmp_path / 'plain-file'
    not_a_dir.write_text("a file where the repo's parent directory should be")
    with pytest.raises(SystemExit) as exit_info:
        convert(root, not_a_dir / 'aim')
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'not writable' in err[0] and str(not_a_dir) in err[0]
