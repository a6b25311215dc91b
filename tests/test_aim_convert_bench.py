"""The bench against ``aim convert``: its logdir writer makes what it claims, its venv is pinned, its
flags fail early, and its comparison of two repos names what one lacks. Nothing here is timed."""
from __future__ import annotations

import collections
import glob
import os
import re

import pytest
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2

from benchmarks import aim_convert_bench, aim_convert_venv
from benchmarks.convert_logdir import CONTEXTS, HISTOGRAM_TAG, SHORT, expected_points, run_names, shape_for, \
    write_convert_logdir
from benchmarks.repo_counts import RepoCounts, compare_counts


def _read_logdir(root):
    """{(run, context): Counter of (kind, writer's form, tag)} read with TensorBoard's own record reader
    (the raw one: its ``EventFileLoader`` rewrites every value as a tensor)."""
    found = collections.defaultdict(collections.Counter)
    for path in glob.glob(os.path.join(root, '*', '*', '*tfevents*')):
        run, context = path.split(os.sep)[-3:-1]
        for record in RawEventFileLoader(path).Load():
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.tag == HISTOGRAM_TAG:
                    found[(run, context)][('distribution', value.WhichOneof('value'), value.tag)] += 1
                else:
                    form = value.WhichOneof('value')  # simple_value: tensorboardX; tensor: TF2's scalar
                    found[(run, context)][('metric', form, value.tag)] += 1
    return found


def test_convert_logdir_writes_the_layout_and_points_it_claims(tmp_path):
    root = str(tmp_path / 'logdir')
    written = write_convert_logdir(root, 2, SHORT)
    assert written == expected_points(2, SHORT) == {'metric': 2 * 2 * 2 * 100, 'distribution': 2 * 2 * 2}
    # aim convert's layout: run directories holding context directories, no stray file in the logdir
    assert sorted(os.listdir(root)) == run_names(2)
    for run in run_names(2):
        assert sorted(os.listdir(os.path.join(root, run))) == sorted(CONTEXTS)
    found = _read_logdir(root)
    assert set(found) == {(run, context) for run in run_names(2) for context in CONTEXTS}
    for (run, context), counts in found.items():
        scalar_form = 'simple_value' if run == 'run_0000' else 'tensor'  # tensorboardX, then TF2-style
        expected = {('metric', scalar_form, tag): SHORT.steps for tag in SHORT.tags}
        expected[('distribution', 'histo', HISTOGRAM_TAG)] = len(SHORT.histogram_steps)
        assert dict(counts) == expected, (run, context)
    # the odd run's histograms come from a second writer: two event files per context
    assert len(glob.glob(os.path.join(root, 'run_0001', 'train', '*tfevents*'))) == 2
    assert shape_for(200).steps * len(shape_for(200).tags) == 1_000 and shape_for(2_000) == SHORT


def test_the_aim_convert_venv_is_pinned_and_made_once(tmp_path):
    lines = aim_convert_venv.pinned_requirements()
    assert all(re.fullmatch(r'[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+', line) for line in lines), lines
    pins = {line.split('==')[0].lower().replace('_', '-'): line.split('==')[1] for line in lines}
    assert pins['aim'] == '3.29.1' and pins['tensorflow-cpu'] == '2.21.0' and pins['tensorboard'] == '2.21.0'
    cache = str(tmp_path)
    assert aim_convert_venv.install_command(cache)[-2:] == ['-r', aim_convert_venv.REQUIREMENTS]
    assert aim_convert_venv.create_command(cache)[-1] == os.path.join(cache, 'aim-convert-venv')
    # a venv whose stamp holds the requirements is taken as it is: no pip, no network
    venv = aim_convert_venv.venv_dir(cache)
    os.makedirs(venv)
    with open(aim_convert_venv.REQUIREMENTS) as f, open(os.path.join(venv, '.installed'), 'w') as stamp:
        stamp.write(f.read())
    assert aim_convert_venv.ensure_venv(cache, log=pytest.fail) == os.path.join(venv, 'bin', 'aim')


@pytest.mark.parametrize('flag, value', [('--runs-list', '200,2k'), ('--runs-list', '0'),
                                         ('--bucket-workers', 'two'), ('--trials', '0')])
def test_a_bad_flag_is_one_line_naming_the_value_before_any_work(tmp_path, capsys, flag, value):
    cache = tmp_path / 'cache'
    with pytest.raises(SystemExit) as exit_:
        aim_convert_bench.main([flag, value, '--cache', str(cache), '--no-record'])
    assert exit_.value.code == 2
    assert value in capsys.readouterr().err
    assert not cache.exists()


def test_compare_counts_names_what_the_other_repo_lacks():
    ours = RepoCounts({'run_0': {'metric': 500, 'distribution': 5}, 'run_1': {'metric': 500, 'distribution': 5}},
                      {'run_0': {'metric': 2, 'distribution': 1}, 'run_1': {'metric': 2, 'distribution': 1}})
    assert compare_counts(ours, ours) == []
    theirs = RepoCounts({'run_0': {'metric': 500}, 'run_1': {'metric': 500}},
                        {'run_0': {'metric': 2}, 'run_1': {'metric': 2}})
    assert compare_counts(ours, theirs) == [('distribution', '0 of 10 points in 0 of 2 sequences')]
    shifted = RepoCounts({'run_0': {'metric': 400, 'distribution': 5}, 'run_1': {'metric': 600, 'distribution': 5}},
                         ours.sequences)
    assert compare_counts(ours, shifted) == [('metric', 'the same total, spread differently over the runs')]
    fewer = RepoCounts({'run_0': ours.points['run_0']}, {'run_0': ours.sequences['run_0']})
    assert compare_counts(ours, fewer)[0][0] == 'runs'
