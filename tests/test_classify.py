"""The run / group / context rules of Aim's converter guide, and odd trees."""
import random

import pytest

from transforms.classify import (AIM, FLAT, TENSORBOARD, classify, is_event_file, look_like_runs, non_event_kind,
                                 run_name)

E = 'events.out.tfevents.{}.host'
SEED = [
    f'run_1/{E.format(1)}', f'run_1/{E.format(2)}', f'group_1/{E.format(3)}',
    f'group_1/run_2/train/{E.format(4)}', f'group_1/run_2/train/{E.format(5)}',
    f'group_1/run_2/validate/{E.format(6)}', f'group_1/run_2/validate/{E.format(7)}',
    f'group_1/run_2/{E.format(8)}', f'group_1/run_2/{E.format(9)}',
    f'group_1/run_3/{E.format(10)}', f'group_1/run_3/{E.format(11)}', E.format(12), E.format(13),
]


def shape(plan):
    return {run: {ctx: len(files) for ctx, files in contexts.items()} for run, contexts in plan.runs.items()}


def test_seed_hierarchy_nested():
    plan = classify(SEED)
    assert shape(plan) == {
        'run_1': {None: 2},
        'group_1/run_2': {None: 2, 'train': 2, 'validate': 2},
        'group_1/run_3': {None: 2},
    }
    assert plan.ignored == sorted([E.format(12), E.format(13), f'group_1/{E.format(3)}'])


def test_seed_hierarchy_flat():
    plan = classify(SEED, FLAT)
    assert shape(plan) == {
        'run_1': {None: 2},
        'group_1/run_2/train': {None: 2},
        'group_1/run_2/validate': {None: 2},
        'group_1/run_3': {None: 2},
    }
    assert plan.ignored == sorted([E.format(12), E.format(13), f'group_1/{E.format(3)}',
                                   f'group_1/run_2/{E.format(8)}', f'group_1/run_2/{E.format(9)}'])


@pytest.mark.parametrize('layout', [AIM, FLAT, TENSORBOARD])
def test_any_listing_order_gives_the_same_plan(layout):
    expected = classify(SEED, layout)
    rng = random.Random(7)
    for _ in range(20):
        files = SEED[:]
        rng.shuffle(files)
        assert classify(files, layout) == expected


def test_every_file_is_assigned_once_or_ignored():
    plan = classify(SEED)
    assigned = [a.path for a in plan.assignments()]
    assert len(assigned) == len(set(assigned))
    assert sorted(assigned + plan.ignored) == sorted(SEED)


def test_deeper_nesting_group_of_groups():
    files = [f'a/b/run/ctx/{E.format(1)}', f'a/b/run/{E.format(2)}', f'a/b/other/{E.format(3)}']
    plan = classify(files)
    # ctx (depth 4) makes a/b/run a run and a/b a group; a/b/other's parent is a group, so it is a run
    assert shape(plan) == {'a/b/run': {'ctx': 1, None: 1}, 'a/b/other': {None: 1}}
    assert plan.ignored == []


def test_run_inside_a_context():
    # r/c holds events and so does r/c/sub: sub is c's context, c is the run, r is a group
    files = [f'g/r/c/{E.format(1)}', f'g/r/c/sub/{E.format(2)}']
    plan = classify(files)
    assert shape(plan) == {'g/r/c': {None: 1, 'sub': 1}}


def test_names_with_spaces_and_unicode():
    files = [f'my run/{E.format(1)}', f'grp x/run ä/train set/{E.format(2)}']
    plan = classify(files)
    assert shape(plan) == {'my run': {None: 1}, 'grp x/run ä': {'train set': 1}}


@pytest.mark.parametrize('layout', [AIM, FLAT, TENSORBOARD])
def test_a_logdir_holding_the_only_event_files_is_a_run(layout):
    """``--logdir lightning_logs/version_0``: Aim's rules would ignore every file; TensorBoard shows a run."""
    plan = classify([E.format(1), E.format(2)], layout)
    assert shape(plan) == {'': {None: 2}} and plan.ignored == []
    assert run_name('', '/data/lightning_logs/version_0/') == 'version_0'
    assert run_name('group_1/run_2', '/data/logs') == 'group_1/run_2'


def test_tensorboard_layout_makes_every_directory_with_event_files_a_run():
    plan = classify(SEED, TENSORBOARD)
    assert shape(plan) == {
        '': {None: 2}, 'run_1': {None: 2}, 'group_1': {None: 1}, 'group_1/run_2': {None: 2},
        'group_1/run_2/train': {None: 2}, 'group_1/run_2/validate': {None: 2}, 'group_1/run_3': {None: 2},
    }
    assert plan.ignored == []


def test_numbered_sibling_contexts_look_like_separate_runs():
    files = [f'lightning_logs/version_{i}/{E.format(i)}' for i in range(3)]
    files += [f'keras/{ctx}/{E.format(9)}' for ctx in ('train', 'validation')]
    files += [f'sweep/seed_1/{E.format(1)}', f'sweep/other/{E.format(1)}']  # one numbered: not a series
    files += [f'tbx/{E.format(1)}', f'tbx/1700000000.5/{E.format(2)}', f'tbx/1700000100.25/{E.format(3)}']
    plan = classify(files)
    assert set(plan.runs) == {'lightning_logs', 'keras', 'sweep', 'tbx'}
    assert look_like_runs(plan) == {'lightning_logs': ['version_0', 'version_1', 'version_2'],
                                    'tbx': ['1700000000.5', '1700000100.25']}
    assert look_like_runs(classify(files, TENSORBOARD)) == {}


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="unknown layout 'nested'"):
        classify(SEED, 'nested')


def test_non_event_files_are_not_listed():
    assert not is_event_file('run/notes.txt')
    assert is_event_file('run/events.out.tfevents.1.host.v2')
    plan = classify(['run/notes.txt', f'run/{E.format(1)}'])
    assert shape(plan) == {'run': {None: 1}}


def test_thousands_of_directories():
    files = [f'sweep_{g}/trial_{t}/{ctx}/{E.format(1)}' for g in range(20) for t in range(100)
             for ctx in ('train', 'eval')]
    files += [f'solo_{i}/{E.format(1)}' for i in range(500)]
    plan = classify(files)
    assert len(plan.runs) == 2000 + 500
    assert plan.runs['sweep_3/trial_42'] == {'train': [f'sweep_3/trial_42/train/{E.format(1)}'],
                                             'eval': [f'sweep_3/trial_42/eval/{E.format(1)}']}
    assert plan.ignored == []
    assert classify(list(reversed(files))) == plan


def test_files_that_are_not_event_files_are_sorted_by_kind():
    files = [f'run/{E.format(1)}', 'run/hparams.yaml', 'run/projector_config.pbtxt', 'run/00000/default/tensors.tsv',
             'run/checkpoints/epoch=3.ckpt', 'run/plugins/profile/2024_01_01/host.xplane.pb', 'run/notes.txt']
    plan = classify(files)
    assert shape(plan) == {'run': {None: 1}} and plan.ignored == []
    assert plan.not_converted == {
        'hparams file': ['run/hparams.yaml'],
        'projector': ['run/00000/default/tensors.tsv', 'run/projector_config.pbtxt'],
        'checkpoint or model': ['run/checkpoints/epoch=3.ckpt'],
        'profile': ['run/plugins/profile/2024_01_01/host.xplane.pb'],
        'other': ['run/notes.txt'],
    }
    assert non_event_kind('saved_model/variables/variables.data-00000-of-00001') == 'checkpoint or model'
