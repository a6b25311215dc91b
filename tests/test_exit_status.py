"""The exit status tells the truth (issue 21, item 4): 0 only when every run was written."""
import argparse
import json

import pytest

from pipelines.common import failure_line, finish


def _args(tmp_path, letters=(), strict=False):
    skipped = tmp_path / 'skipped.jsonl'
    skipped.write_text(''.join(json.dumps(letter, sort_keys=True) + '\n' for letter in letters))
    return argparse.Namespace(repo=str(tmp_path / 'repo'), skipped=str(skipped), strict=strict, report=None)


WRITTEN = {'runs_written': 3, 'runs_failed': 0, 'points_read': 30, 'points_written': 30, 'points_skipped': 0}
FAILED_RUN = {'kind': 'run', 'source': 'logs/run_2', 'count': 10,
              'reason': 'run could not be written: RocksIOError: IO error: No space left on device'}


def test_every_run_written_exits_0(tmp_path, capsys):
    assert finish(dict(WRITTEN), 1.0, _args(tmp_path), 'tf_to_aim') == 0
    assert capsys.readouterr().err == ''


@pytest.mark.parametrize('counter, words', [('runs_failed', 'failed to write'), ('runs_skipped', 'failed to read'),
                                            ('runs_unindexed', 'written but not indexed')])
def test_a_run_not_converted_exits_1_with_one_line_naming_the_count_and_the_first_reason(tmp_path, capsys, counter,
                                                                                          words):
    counters = {**WRITTEN, 'runs_written': 2, counter: 1, 'points_written': 20, 'points_skipped': 10}
    other = {'kind': 'point', 'source': 'logs/run_1', 'count': 1, 'reason': 'duplicate step'}
    assert finish(counters, 1.0, _args(tmp_path, [other, FAILED_RUN]), 'tf_to_aim') == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f'tf_to_aim: error: 1 run not converted (1 {words}); the first: logs/run_2: run could not be '
                    'written: RocksIOError: IO error: No space left on device')


def test_skipped_points_exit_1_only_under_strict(tmp_path, capsys):
    counters = {**WRITTEN, 'points_written': 29, 'points_skipped': 1}
    letter = {'kind': 'point', 'source': 'logs/run_1', 'count': 1, 'reason': 'duplicate step'}
    assert finish(counters, 1.0, _args(tmp_path, [letter]), 'tf_to_aim') == 0
    assert finish(counters, 1.0, _args(tmp_path, [letter], strict=True), 'tf_to_aim') == 1
    assert capsys.readouterr().err == ''


def test_a_failed_pipeline_is_the_line_of_its_fatal_error():
    # what the DirectRunner raises when a worker's bundle fails: the worker's traceback, in its message
    message = ('Pipeline job failed\nTraceback (most recent call last):\n  File "x.py", line 3, in process\n'
               "connectors.disk_guard.RepoFull: no space left on the filesystem of the Aim repo /r (0.0 MB free): "
               "OSError: [Errno 28] No space left on device [while running 'WriteSkipped']\n\n"
               'During handling of the above exception, another exception occurred:\n'
               'RuntimeError: something else entirely\n')
    assert failure_line(RuntimeError(message)) == (
        "RepoFull: no space left on the filesystem of the Aim repo /r (0.0 MB free): OSError: [Errno 28] No space "
        "left on device [while running 'WriteSkipped']")
    assert failure_line(RuntimeError('Traceback:\n  File "y"\nValueError: bad value\n')) == 'ValueError: bad value'
    assert failure_line(KeyError('k')) == "KeyError: 'k'"
