"""The ``.wandb`` reader (``connectors.wandb_file``) on files the real ``wandb`` package wrote, intact and
damaged the way files get damaged: a flipped byte, a tail cut off by a killed job, a file of another kind."""
from __future__ import annotations

import collections
import io
import os
import shutil

import pytest

from connectors.event_files import EventFileSource
from connectors.wandb_file import BLOCK_SIZE, Problem, iter_records
from runmodel import Skip
from tests.wandb_runs import LONG_TEXT, reference_records, wandb_files
from transforms.wandb import wandb_run_data

# tests taking ``wandb_runs`` are slow: the session's W&B runs are written by wandb itself (~30 s)
slow = pytest.mark.slow


def _read(data: bytes):
    items = list(iter_records(io.BytesIO(data)))
    return [i for i in items if not isinstance(i, Problem)], [i for i in items if isinstance(i, Problem)]


def _alpha(root: str) -> str:
    return next(path for path in wandb_files(root) if '/alpha/' in path)


@slow
def test_reads_what_wandb_wrote(wandb_runs):
    root, _ = wandb_runs
    for path in wandb_files(root):
        with open(path, 'rb') as f:
            data = f.read()
        records, problems = _read(data)
        assert problems == [], path
        assert [r.SerializeToString() for _, r in records] == [r.SerializeToString() for r in reference_records(path)]
    alpha = _alpha(root)
    assert os.path.getsize(alpha) > 3 * BLOCK_SIZE  # several blocks, and a record spanning three of them
    with open(alpha, 'rb') as f:
        records, _ = _read(f.read())
    longest = max((r for _, r in records if r.WhichOneof('record_type') == 'history'), key=lambda r: r.ByteSize())
    assert longest.ByteSize() > 2 * BLOCK_SIZE and LONG_TEXT in str(longest)


@slow
def test_bad_chunk_loses_its_block_only(wandb_runs):
    """A byte flipped in a chunk mid-file: one problem at that chunk; every record before it and every
    record starting in a later block is kept."""
    path = _alpha(wandb_runs[0])
    reference = reference_records(path, offsets=True)
    with open(path, 'rb') as f:
        data = bytearray(f.read())
    # a record in one chunk (inside a block, not the file's first block nor its last), records after it
    index = next(i for i, (start, end, _) in enumerate(reference)
                 if start >= BLOCK_SIZE and start // BLOCK_SIZE == end // BLOCK_SIZE
                 and start % BLOCK_SIZE > 1000 and end % BLOCK_SIZE < BLOCK_SIZE - 1000
                 and end < len(data) - BLOCK_SIZE)
    start, end, _ = reference[index]
    block_end = (start // BLOCK_SIZE + 1) * BLOCK_SIZE
    data[start + 10] ^= 0xFF
    records, problems = _read(bytes(data))
    assert [(p.offset, p.kind) for p in problems] == [(start, 'chunk_crc')]
    resumed = next(i for i, (s, _, _) in enumerate(reference) if s >= block_end)
    assert resumed > index + 1  # the damage cost the records after it in its block
    expected = reference[:index] + reference[resumed:]
    assert [r.SerializeToString() for _, r in records] == [r.SerializeToString() for _, _, r in expected]
    assert [offset for offset, _ in records] == [s for s, _, _ in expected]


@slow
@pytest.mark.parametrize('cut', ['last record', 'spanning record', 'between chunks', 'chunk header'])
def test_truncated_tail_keeps_everything_before(wandb_runs, cut):
    path = _alpha(wandb_runs[0])
    reference = reference_records(path, offsets=True)
    with open(path, 'rb') as f:
        data = f.read()
    if cut == 'last record':
        index, size = len(reference) - 1, len(data) - 3
    elif cut == 'spanning record':  # inside the record that spans blocks, in its second block
        index = max(range(len(reference)), key=lambda i: reference[i][1] - reference[i][0])
        size = reference[index][0] + BLOCK_SIZE + 100
    elif cut == 'between chunks':  # at the end of the first chunk of the record that spans blocks
        index = max(range(len(reference)), key=lambda i: reference[i][1] - reference[i][0])
        size = (reference[index][0] // BLOCK_SIZE + 1) * BLOCK_SIZE
    else:  # three bytes into the chunk header of a record
        index = len(reference) // 2
        size = reference[index][0] + 3
    records, problems = _read(data[:size])
    assert [r.SerializeToString() for _, r in records] == [r.SerializeToString() for _, _, r in reference[:index]]
    assert len(problems) == 1 and problems[0].kind == 'truncated', problems


def test_not_a_wandb_file():
    records, problems = _read(b'\x00' * 100 + b'events')
    assert records == [] and [p.kind for p in problems] == ['header']
    assert _read(b'') == ([], [])


@slow
def test_truncated_run_gives_its_points_and_one_dead_letter(wandb_runs, tmp_path):
    """Through the run reader: a copy of alpha's file cut inside its last history rows keeps every point
    before the cut, and the report has one dead letter for the damage."""
    path = _alpha(wandb_runs[0])
    reference = reference_records(path, offsets=True)
    history = [i for i, (_, _, r) in enumerate(reference) if r.WhichOneof('record_type') == 'history']
    cut_at = history[-10]
    run_dir = tmp_path / 'wandb' / 'offline-run-20200101_000000-cut'
    run_dir.mkdir(parents=True)
    with open(path, 'rb') as f:
        data = f.read()
    (run_dir / 'run-cut.wandb').write_bytes(data[:reference[cut_at][0] + 20])
    shutil.copytree(os.path.join(os.path.dirname(path), 'files'), run_dir / 'files')
    data = wandb_run_data(EventFileSource(str(tmp_path)), 'cut', ['wandb/offline-run-20200101_000000-cut/run-cut.wandb'])
    points, skips = collections.Counter(), []
    for item in data.items():
        if isinstance(item, Skip):
            skips.append(item)
            continue
        for series in item:
            if series.name == 'loss':
                points['loss'] += len(series)
                assert list(series.steps) == list(range(len(series)))
    record_skips = [s for s in skips if s.kind == 'record']
    assert len(record_skips) == 1 and 'cut short' in record_skips[0].reason
    assert points['loss'] == len(history) - 10
    assert data.spec.attributes['wandb_state'] == 'unfinished'


def _summarize(data):
    """A run as the sink would see it: (name, experiment, {sequence: points}, dead letters)."""
    points, skips = collections.Counter(), 0
    for item in data.items():
        if isinstance(item, Skip):
            skips += item.count
            continue
        for series in item:
            points[f'{series.kind} {series.name}'] += len(series)
    return data.spec.name, data.spec.experiment, points['metric loss'], skips


@slow
def test_read_wandb_under_test_pipeline(wandb_runs):
    """``ReadWandb`` as a pipeline step: one ``RunData`` per W&B run id (the resumed run's two files are
    one), read while consumed, with W&B's latest-run links passed over."""
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to
    import apache_beam as beam

    from transforms.wandb import ReadWandb, plan_wandb_runs

    root, expected = wandb_runs
    source = EventFileSource(root)
    plan = plan_wandb_runs(source.list_files())
    assert plan.files_total == 6  # (fsspec's local listing does not follow the latest-run links)
    with TestPipeline() as p:
        read = p | ReadWandb(source, plan)
        assert_that(read['runs'] | beam.Map(_summarize), equal_to([
            ('alpha', 'vision', 200, 3), ('beta', 'vision', 5, 0), ('resumed', 'nlp', 10, 0), ('gamma', 'vision', 20, 0),
            ('empty', 'vision', 0, 0)]))
        assert_that(read['skipped'], equal_to([]), label='NoSkipped')


def test_plan_groups_files_by_run_id_and_passes_over_latest_run():
    from transforms.wandb import plan_wandb_runs

    listing = ['a/wandb/offline-run-20240102_000000-abc/run-abc.wandb',
               'a/wandb/offline-run-20240101_000000-abc/run-abc.wandb',
               'a/wandb/offline-run-20240101_000000-abc/files/media/images/x.png',
               'a/wandb/latest-run/run-abc.wandb', 'b/wandb/run-20240103_000000-xyz/run-xyz.wandb',
               'b/wandb/debug.log', 'notes/run-old.wandb.bak']
    plan = plan_wandb_runs(listing)
    assert plan.runs == {'abc': ['a/wandb/offline-run-20240101_000000-abc/run-abc.wandb',
                                 'a/wandb/offline-run-20240102_000000-abc/run-abc.wandb'],
                         'xyz': ['b/wandb/run-20240103_000000-xyz/run-xyz.wandb']}
    assert plan.linked == ['a/wandb/latest-run/run-abc.wandb']
