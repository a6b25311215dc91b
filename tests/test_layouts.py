"""Logdirs as PyTorch, Lightning and tensorboardX write them, under each layout, end to end.

The bucket (``samples.tensorboard_frameworks``) is written by the real packages; each conversion is
read back through Aim's SDK and compared, directory by directory, with what TensorBoard's own
``EventAccumulator`` reads from the same files: every scalar, and every hparam value of every
Lightning version, findable with Aim's query language.
"""
from __future__ import annotations

import json
import logging
import os
import re

import pytest

from pipelines import tf_to_aim
from samples.tensorboard_frameworks import LIGHTNING_HPARAMS, TORCH_HPARAMS_RUN, write_framework_bucket
from tests.readback import assert_same_points, read_metrics, read_runs

pytestmark = pytest.mark.slow

EVENT_DIRS = ('lightning_logs/version_0', 'lightning_logs/version_1', 'torch_run', 'torch_run/loss_train',
              'torch_run/loss_val', f'torch_run/{TORCH_HPARAMS_RUN}', 'tbx_run', 'tbx_run/train', 'tbx_run/eval')
# event-file directory -> (Aim run, context) under each layout; a directory not listed is ignored
LAYOUT_RUNS = {
    'aim': {d: (d.split('/')[0], d.split('/')[1] if '/' in d else None) for d in EVENT_DIRS},
    # Aim's --flat: a deeper directory is a run and its parent a group, whose own files are unorganized
    'flat': {d: (d, None) for d in EVENT_DIRS if '/' in d},
    'tensorboard': {d: (d, None) for d in EVENT_DIRS},
}


@pytest.fixture(scope='module')
def bucket(tmp_path_factory):
    root = tmp_path_factory.mktemp('bucket') / 'team'
    hparams = write_framework_bucket(str(root))
    return root, {os.path.relpath(d, root): values for d, values in hparams.items()}


def accumulated_scalars(directory):
    """{tag: [(step, value, wall time)]} as TensorBoard reads the event files of one directory."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(directory), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()['scalars']}


def expected_metrics(root, runs):
    out = {}
    for directory, (run, context) in runs.items():
        ctx = json.dumps({'entry': context} if context else {}, sort_keys=True)
        for tag, points in accumulated_scalars(root / directory).items():
            out[(run, ctx, tag)] = points
    return out


def convert(logdir, repo, *extra):
    return tf_to_aim.run(['--logdir', str(logdir), '--repo', str(repo), '--skipped', f'{repo}.skipped.jsonl', *extra])


def _query(repo_path, query):
    from aim import Repo

    return sorted(item.run.name for item in Repo.from_path(str(repo_path)).query_runs(query, report_mode=0).iter_runs())


@pytest.mark.parametrize('layout', sorted(LAYOUT_RUNS))
def test_every_scalar_and_hparam_under_each_layout(bucket, layout, tmp_path, capsys):
    root, hparams = bucket
    repo = tmp_path / 'aim'
    assert convert(root, repo, '--layout', layout) == 0
    report = capsys.readouterr().out
    # the files that are not event files are counted, by kind
    assert re.search(r'files not converted\s+5\n\s+hparams file\s+2\n\s+projector\s+3\n', report)
    runs = LAYOUT_RUNS[layout]
    assert sorted(read_runs(str(repo))) == sorted({run for run, _ in runs.values()})
    assert_same_points(read_metrics(str(repo)), expected_metrics(root, runs))

    attributes = {name: run['attributes'] for name, run in read_runs(str(repo)).items()}
    for directory, values in hparams.items():
        run, context = runs[directory]
        if layout == 'aim' and directory.startswith('lightning_logs/'):  # versions differ: kept per context
            assert attributes[run]['hparams_by_context'][context] == values
            lr = values['lr']
            assert _query(repo, f'run.hparams_by_context.{context}.lr == {lr}') == [run]
        else:
            assert attributes[run]['hparams'] == values
    if layout == 'aim':
        assert attributes['lightning_logs']['hparams'] == {'layers': 2, 'optimizer': 'adam'}  # agreed by both
    else:
        assert _query(repo, 'run.hparams.lr == 0.02') == ['lightning_logs/version_1']

    letters = [json.loads(line) for line in open(f'{repo}.skipped.jsonl')]
    ignored = sorted(os.path.relpath(os.path.dirname(s['source']), root) for s in letters
                     if s['reason'].startswith('unorganized'))
    assert ignored == sorted(set(EVENT_DIRS) - set(runs))


def test_a_logdir_that_is_itself_a_run(bucket, tmp_path):
    """``--logdir lightning_logs/version_0``: one run, named after the logdir, as TensorBoard shows it."""
    root, hparams = bucket
    version = root / 'lightning_logs' / 'version_0'
    repo = tmp_path / 'aim'
    assert convert(version, repo) == 0
    runs = read_runs(str(repo))
    assert sorted(runs) == ['version_0']
    assert runs['version_0']['attributes']['hparams'] == LIGHTNING_HPARAMS[0]
    assert runs['version_0']['attributes']['tensorboard_logdir'] == str(version)
    assert_same_points(read_metrics(str(repo)), expected_metrics(version, {'': ('version_0', None)}))


def test_a_conversion_that_writes_no_run_exits_non_zero_saying_why(tmp_path, capsys):
    logdir = tmp_path / 'logs' / 'run'
    logdir.mkdir(parents=True)
    (logdir / 'events.out.tfevents.1.host').write_bytes(b'')  # a writer killed before its first record
    assert convert(tmp_path / 'logs', tmp_path / 'aim') == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if 'no run written' in line]
    assert len(lines) == 1 and str(tmp_path / 'logs') in lines[0] and '1 event file' in lines[0]
    assert 'View the result' not in captured.out


def test_plan_warns_when_aims_rules_merge_numbered_sibling_runs(bucket, tmp_path, caplog, capsys):
    root, _ = bucket
    with caplog.at_level(logging.WARNING, logger='tf_to_aim'):
        assert convert(root, tmp_path / 'aim', '--dry-run') == 0
    warnings = [r.getMessage() for r in caplog.records if 'look like separate runs' in r.getMessage()]
    assert len(warnings) == 1
    assert 'lightning_logs' in warnings[0] and 'version_0, version_1' in warnings[0]
    assert '--layout tensorboard' in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='tf_to_aim'):
        assert convert(root, tmp_path / 'aim', '--dry-run', '--layout', 'tensorboard') == 0
    assert not [r for r in caplog.records if 'look like separate runs' in r.getMessage()]
    plan = capsys.readouterr().out
    assert 'run lightning_logs/version_1' in plan
    # the files that are not event files are listed, by kind
    assert 'not converted (not event files): 5' in plan and 'hparams file: 2 files' in plan
    for path in ('lightning_logs/version_0/hparams.yaml', 'torch_run/projector_config.pbtxt',
                 'torch_run/00000/default/tensors.tsv'):
        assert path in plan


@pytest.mark.parametrize('argv, message', [
    (['--layout', 'tensorboard', '--flat'], '--flat contradicts --layout tensorboard'),
    (['--layout', 'nested'], "--layout 'nested' is not one of aim, flat, tensorboard"),
])
def test_bad_layout_flags_exit_2_with_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:  # before the logdir is even listed
        convert(tmp_path / 'logs', tmp_path / 'aim', *argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
