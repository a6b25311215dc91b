"""A run written chunk by chunk, as its source reads it (``RunData.stream``), leaves exactly the RocksDB
keys and values of the same run merged and written whole, and holds one chunk in memory, not the run."""
from __future__ import annotations

import os
import tracemalloc
from typing import Iterator, List, Union

import numpy as np
from aim.storage.context import Context

from connectors.aim_sink import AimRunWriter, index_runs, materialize, open_repo, run_hash_for
from connectors.event_files import EventFileSource
from connectors.tfrecord import frame
from transforms.classify import EventFileAssignment
from runmodel import METRIC, SUPERSEDED_REASON, RunData, RunSpec, Series, Skip
from transforms.tensorboard import tensorboard_run_data
from tests.readback import read_metrics
from tests.test_bulk_write import _container_items, _png


def _part(kind: str, name: str, context: dict, points) -> Series:
    series = Series(kind, name, context, source='chunks')
    for position, (step, value) in enumerate(points):
        series.append(step, 1_700_000_000.0 + step + position / 1000, value, position)
    return series


def _images(*samples_per_step) -> List:
    return [[{'data': _png(step * 10 + i), 'format': 'png', 'caption': f'{step}-{i}'} for i in range(count)]
            for step, count in samples_per_step]


class ChunkedSource:
    """A stream of fixed chunks and dead letters, as a source hands them to the writer."""

    def __init__(self, items):
        self.items = items

    def __call__(self, data: RunData) -> Iterator[Union[List[Series], Skip]]:
        for item in self.items:
            if not isinstance(item, Skip):
                data.points_seen += sum(len(s) for s in item)
            yield item


def _chunks():
    train, other = {'subset': 'train'}, {}
    image_steps = _images((0, 1), (1, 1), (2, 2), (3, 1))
    return [
        [_part(METRIC, 'loss', train, [(s, 1.0 / (s + 1)) for s in range(0, 300)]),
         _part(METRIC, 'acc', other, [(s, s / 1000) for s in range(500, 1000)]),  # its later steps first
         _part(METRIC, 'dup', other, [(s, 1000.0 if s >= 50 else float(s)) for s in range(0, 100)]),
         _part('image', 'samples', train, [(0, image_steps[0]), (1, image_steps[1])]),
         _part('text', 'notes', other, [(0, 'zero'), (1, 'one (superseded)')]),
         _part(METRIC, 'tiny', other, [(0, 1.0), (1, 2.0)])],  # a few points a part: runs of many tags
        Skip('chunks', 'a dead letter met while reading', 'record', offset=12),
        [_part(METRIC, 'loss', train, [(s, 1.0 / (s + 1)) for s in range(300, 700)]),
         _part(METRIC, 'acc', other, [(s, s / 1000) for s in range(0, 500)]),
         # steps 50..99 again: the later points win, and the superseded 1000.0s must not stay the max
         _part(METRIC, 'dup', other, [(s, -float(s)) for s in range(50, 150)] + [(149, float('nan'))]),
         _part('image', 'samples', train, [(2, image_steps[2]), (3, image_steps[3])]),  # now a list: all lists
         _part('text', 'notes', other, [(1, 'one'), (2, 'two')]),
         _part(METRIC, 'tiny', other, [(2, float('nan')), (2, 5.0)])],
        [_part(METRIC, 'loss', train, [(s, 1.0 / (s + 1)) for s in range(700, 1000)]),
         _part('distribution', 'weights', other, [(5, {'edges': [0.0, 1.0, 3.0], 'counts': [2.0, 1.0]})]),
         _part(METRIC, 'tiny', other, [(1, 7.0)])],  # a step written two chunks before
    ]


def _write(repo_path: str, data: RunData):
    open_repo(repo_path)
    skips: List[Skip] = []
    written = AimRunWriter(repo_path).write(data, skips.append)
    index_runs(repo_path, [written.hash], [written.props], {written.hash: written.meta_records})
    return written, skips


def test_a_run_written_in_chunks_equals_the_run_merged_and_written_whole(tmp_path):
    spec = dict(identity='streamed', name='streamed', experiment='chunks', attributes={'hparams': {'lr': 0.1}})
    streamed = RunData(RunSpec(**spec), stream=ChunkedSource(_chunks()))
    whole, superseded = materialize(RunData(RunSpec(**spec), stream=ChunkedSource(_chunks())), lambda skip: None)
    assert superseded == 54 and {len(s) for s in whole.series if s.name == 'dup'} == {150}

    got, got_skips = _write(str(tmp_path / 'streamed'), streamed)
    want, want_skips = _write(str(tmp_path / 'whole'), whole)
    assert got.points == want.points == {'metric': 2153, 'image': 4, 'text': 3, 'distribution': 1}
    assert got.superseded == 54 and streamed.points_seen == 2153 + 4 + 3 + 1 + 54
    assert [(s.reason, s.count, s.detail) for s in got_skips if s.reason == SUPERSEDED_REASON] == [
        (SUPERSEDED_REASON, 51, 'dup {}'), (SUPERSEDED_REASON, 1, 'notes {}'), (SUPERSEDED_REASON, 2, 'tiny {}')]
    assert Skip('chunks', 'a dead letter met while reading', 'record', offset=12) in got_skips
    assert got.props == want.props
    run_hash = run_hash_for('streamed')
    for name in ('meta', 'seqs'):
        chunked = _container_items(str(tmp_path / 'streamed'), name, run_hash)
        merged = _container_items(str(tmp_path / 'whole'), name, run_hash)
        assert sorted(chunked) == sorted(merged), name
        assert [k for k in chunked if chunked[k] != merged[k]] == [], name

    from aim import Repo
    run = next(iter(Repo.from_path(str(tmp_path / 'streamed')).iter_runs()))
    dup = run.get_metric('dup', Context({}))
    steps, (values, _, _) = dup.data.items_list()
    assert steps == list(range(150)) and values[50] == -50.0 and np.isnan(values[149])
    assert max(v for v in values if not np.isnan(v)) == 49.0  # the superseded 1000.0s are gone
    tiny = run.get_metric('tiny', Context({})).data.items_list()
    assert tiny[0] == [0, 1, 2] and tiny[1][0] == [1.0, 7.0, 5.0]  # the later points won
    images = run.get_image_sequence('samples', Context({'subset': 'train'})).data.values_list()[0]
    assert [len(step) for step in images] == [1, 1, 2, 1]  # a sequence of one type: every step a list


def test_a_rewrite_in_chunks_replaces_what_an_earlier_conversion_wrote(tmp_path):
    """Re-runs rewrite a run whole: points the source no longer holds go, even for a sequence that now
    first appears in a later chunk."""
    repo = str(tmp_path / 'repo')
    spec = dict(identity='again', name='again', experiment='chunks')
    _write(repo, RunData(RunSpec(**spec), stream=ChunkedSource(_chunks())))
    fewer = [[_part(METRIC, 'loss', {'subset': 'train'}, [(0, 5.0)])],
             [_part(METRIC, 'acc', {}, [(1, 6.0)])]]
    _write(repo, RunData(RunSpec(**spec), stream=ChunkedSource(fewer)))
    points = {k[2]: [p[:2] for p in v] for k, v in read_metrics(repo).items()}
    assert points['acc'] == [(1, 6.0)] and points['loss'] == [(0, 5.0)]


def _scalar_event_file(path: str, tags: int, steps: int) -> int:
    """An event file of ``tags`` tensorboardX-style scalars at ``steps`` steps (written as bytes: the real
    writers take minutes for a million points); the points it holds."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as out:
        out.write(frame(event_pb2.Event(wall_time=1_600_000_000.0, file_version='brain.Event:2').SerializeToString()))
        for step in range(steps):
            values = [summary_pb2.Summary.Value(tag=f'tag{t}', simple_value=step * 0.5 + t) for t in range(tags)]
            event = event_pb2.Event(step=step, wall_time=1_600_000_000.0 + step, summary=summary_pb2.Summary(value=values))
            out.write(frame(event.SerializeToString()))
    return tags * steps


def _peak_while_writing(repo_path: str, logdir: str, chunk_points: int) -> int:
    open_repo(repo_path)
    source = EventFileSource(logdir)
    (listed,) = source.list_event_files()
    data = tensorboard_run_data(source, 'memory', 'run', [EventFileAssignment('run', None, listed)], chunk_points)
    writer = AimRunWriter(repo_path)
    tracemalloc.start()
    try:
        written = writer.write(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(written.points.values()) == 300_000
    index_runs(repo_path, [written.hash], [written.props], {written.hash: written.meta_records})
    return peak


def test_memory_is_bounded_by_a_chunk_not_by_the_run(tmp_path, monkeypatch):
    """Writing a 300,000-point run read in chunks of 10,000 points allocates a small fraction of what the
    same run read whole does (Python's own allocations, numpy's included, traced by tracemalloc). Write
    batches are committed at 1 MB here (8 MB in use), so that what is measured is the chunk's share."""
    from connectors import aim_storage

    monkeypatch.setattr(aim_storage, 'COMMIT_BYTES', 1 << 20)
    logdir = str(tmp_path / 'logs')
    assert _scalar_event_file(os.path.join(logdir, 'run', 'events.out.tfevents.1.host'), 3, 100_000) == 300_000
    chunked = _peak_while_writing(str(tmp_path / 'chunked'), logdir, 10_000)
    whole = _peak_while_writing(str(tmp_path / 'whole'), logdir, 10_000_000)
    assert chunked * 4 < whole, (chunked, whole)
    assert read_metrics(str(tmp_path / 'chunked')) == read_metrics(str(tmp_path / 'whole'))


def test_a_few_points_make_the_records_numpy_makes():
    """Metric sequences of a few points (runs of many tags) take a per-record path: the same bytes."""
    from connectors import aim_storage

    class Container:  # never committed: the records are compared as assembled
        pass

    rng = np.random.default_rng(7)
    for n in (1, 2, 5, aim_storage.FEW):
        steps = rng.permutation(np.arange(0, 10 * n, 10, dtype=np.int64))
        values, times = rng.normal(size=n), 1.7e9 + rng.random(n)
        few, bulk = aim_storage.RecordBatch(Container()), aim_storage.RecordBatch(Container())
        aim_storage.few_metric_records(few, b'prefix', steps.tolist(), values.tolist(), times.tolist())
        keys = aim_storage.step_keys(steps)
        order = np.argsort(keys.view(f'S{keys.shape[1]}').ravel(), kind='stable')
        for name, column in (('epoch', None), ('step', steps), ('time', times), ('val', values)):
            for i in order:
                value = aim_storage._NONE if column is None else aim_storage._encoding.encode(column[i].item())
                bulk.add(aim_storage._record(aim_storage._PUT, b'prefix' + aim_storage.ARRAY_PATHS[name]
                                             + keys[i].tobytes(), value))
        assert b''.join(few._parts) == b''.join(bulk._parts) and len(few) == len(bulk) == 4 * n
