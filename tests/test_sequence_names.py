"""Sequence names Aim cannot hold (issue 21, item 6): set aside as dead letters, the run stays readable."""
import json
from array import array

import pytest

from connectors.aim_names import aim_sequence_name_problem
from connectors.mlflow_source import MlflowRunRecord
from samples.tensorboard_logs import write_tbx, write_tf2
from tests.readback import assert_same_points, expected_metrics, read_metrics
from transforms.mlflow import mlflow_run_data
from transforms.sequence_names import hold_aim_names
from runmodel import METRIC, Series


@pytest.mark.parametrize('name', ['', 'a\udc80b', '\udcff'])
def test_names_aim_cannot_hold_have_a_reason(name):
    assert aim_sequence_name_problem(name)


# each read back unchanged through Aim's SDK when written (connectors/aim_names.py says how it was measured)
@pytest.mark.parametrize('name', [' ', '\t', 'a/b', '/a', 'a/', '.', 'a\nb', '\x00', 'a\x00b', '\xfe', 'a\xffb',
                                  'ü/é', 'a ', 'x' * 70_000, 'loss'])
def test_names_aim_holds_have_no_reason(name):
    assert aim_sequence_name_problem(name) is None


def _series(name, points=3, source='file-1'):
    return Series(METRIC, name, {'entry': 'train'}, steps=array('q', range(points)),
                  wall_times=array('d', [1.0] * points), values=array('d', [0.5] * points), source=source)


def test_hold_aim_names_keeps_the_others_and_counts_every_point_set_aside():
    series = [_series('loss'), _series('', points=4), _series('acc')]
    kept, skips = hold_aim_names(series, 'logs/run_1')
    assert [s.name for s in kept] == ['loss', 'acc']
    assert len(skips) == 1
    skip = skips[0]
    assert (skip.source, skip.kind, skip.count) == ('logs/run_1', 'point', 4)
    assert skip.detail == "metric '' context {'entry': 'train'} in file-1"
    assert skip.reason.startswith('empty sequence name')


def test_an_mlflow_metric_with_an_empty_key_is_a_dead_letter_and_the_others_are_kept():
    record = MlflowRunRecord(run_id='abc', experiment_id='7', run_name='r1', status='FINISHED',
                             start_time=1_700_000_000_000, end_time=1_700_000_001_000, params={}, tags={},
                             metrics={'': [(0, 1.0, 1_700_000_000_100), (1, 2.0, 1_700_000_000_200)],
                                      'loss': [(0, 3.0, 1_700_000_000_100)]},
                             artifacts=[], skipped_artifacts=[])
    data, skips = mlflow_run_data(record, 'exp')
    assert [s.name for s in data.series] == ['loss']
    assert [(s.source, s.kind, s.count, s.detail) for s in skips] == [
        ('mlflow run abc', 'point', 2, "metric '' context {}")]


@pytest.mark.slow
def test_an_empty_tag_is_reported_and_its_run_stays_readable(tmp_path, tf_to_aim):
    logdir = tmp_path / 'logs'
    written = {('run_a', None): write_tf2(str(logdir / 'run_a'), ('', 'loss', 'acc'), 30),
               ('run_b', 'train'): write_tbx(str(logdir / 'run_b' / 'train'), ('loss',), 30)}
    repo = tmp_path / 'repo'
    result = tf_to_aim('--logdir', str(logdir), '--repo', str(repo), '--report', str(tmp_path / 'report.json'),
                       workers=1)
    assert result.returncode == 0, result.stderr

    # run.metrics() works for run_a, and every sequence but the empty tag's is there
    expected = expected_metrics(written)
    unnamed = [key for key in expected if key[2] == '']
    assert len(unnamed) == 1
    del expected[unnamed[0]]
    assert_same_points(read_metrics(str(repo)), expected)

    letters = [json.loads(line) for line in open(tmp_path / 'skipped.jsonl')]
    assert len(letters) == 1
    letter = letters[0]
    assert letter['source'] == str(logdir / 'run_a') and letter['kind'] == 'point' and letter['count'] == 30
    assert letter['detail'].startswith("metric '' context {} in " + str(logdir / 'run_a' / 'events.out.tfevents'))
    counters = json.load(open(tmp_path / 'report.json'))['counters']
    assert (counters['points_read'], counters['points_written'], counters['points_skipped']) == (120, 90, 30)
