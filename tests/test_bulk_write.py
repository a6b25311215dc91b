"""Bulk-written metric sequences (``connectors.aim_sink``) read back through the Aim SDK exactly as
Aim's own per-point path (``run._tracker._track``, what ``aim convert`` calls) leaves them."""
from __future__ import annotations

import math
import os
import shutil
from typing import Dict, List, Tuple

import pytest
from aim.sdk.run import Run
from aim.storage.context import Context

from connectors.aim_sink import AimRunWriter, index_runs, open_repo, run_hash_for
from runmodel import METRIC, RunData, RunSpec, Series

Source = Dict[Tuple[str, str], List[Tuple[int, float, float]]]  # (name, context) -> [(step, value, time)]

INF, NAN = float('inf'), float('nan')


def _series(name: str, context: str, points: List[Tuple[int, float, float]]) -> Series:
    series = Series(METRIC, name, {'subset': context} if context else {})
    for position, (step, value, wall_time) in enumerate(points):
        series.append(step, wall_time, value, position)
    return series


def _bulk_write(repo_path: str, identity: str, source: Source) -> str:
    open_repo(repo_path)
    data = RunData(RunSpec(identity=identity, name=identity, experiment='bulk'),
                   [_series(name, ctx, points) for (name, ctx), points in sorted(source.items())])
    written = AimRunWriter(repo_path).write(data)
    index_runs(repo_path, [written.hash], [written.props])
    return written.hash


def _per_point_write(repo_path: str, source: Source) -> str:
    """The calls ``aim convert`` makes: one ``_track`` per point, with the source's wall time."""
    repo = open_repo(repo_path)
    run = Run(repo=repo, system_tracking_interval=None, capture_terminal_logs=False, experiment='bulk')
    for (name, ctx), points in sorted(source.items()):
        for step, value, wall_time in points:
            run._tracker._track(value, wall_time, name, step, None, context={'subset': ctx} if ctx else {})
    run_hash = run.hash
    run.close()
    index_runs(repo_path, [run_hash])
    return run_hash


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _read(repo_path: str, run_hash: str) -> Dict[Tuple[str, str], dict]:
    """Everything a user sees of a run's metrics through the SDK."""
    repo = open_repo(repo_path, create=False)
    run = Run(run_hash, repo=repo, read_only=True)
    infos = {(t['name'], str(sorted(t['context'].items()))): t['values']
             for t in run.collect_sequence_info('metric')['metric']}
    out = {}
    for metric in run.metrics():
        ctx = metric.context.to_dict()
        steps, (values, epochs, times) = metric.data.items_list()
        again = run.get_metric(metric.name, Context(ctx))
        key = (metric.name, str(sorted(ctx.items())))
        info = infos[key]
        out[key] = {
            'steps': list(steps), 'values': list(values), 'epochs': list(epochs), 'times': list(times),
            'first_step': metric.first_step(), 'last_step': metric.last_step(),
            'get_metric_steps': list(again.data.items_list()[0]),
            'info': {k: info.get(k) for k in ('first', 'first_step', 'last', 'last_step', 'min', 'max', 'dtype')},
        }
    queried = {(m.name, str(sorted(m.context.to_dict().items()))): len(m.data.items_list()[0])
               for m in repo.query_metrics(f'run.hash == "{run_hash}"')}
    assert queried == {k: len(v['steps']) for k, v in out.items()}
    return out


def _assert_equal(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        g, w = got[key], want[key]
        assert g['steps'] == w['steps'], key
        assert g['get_metric_steps'] == w['steps'], key
        for column in ('values', 'epochs'):
            assert len(g[column]) == len(w[column]) and all(map(_same, g[column], w[column])), (key, column)
        assert g['times'] == w['times'], key
        assert (g['first_step'], g['last_step']) == (w['first_step'], w['last_step']), key
        for field, value in w['info'].items():
            other = g['info'][field]
            assert (value == other if not isinstance(value, float) else _same(value, other)), (key, field, other, value)


def _expected(source: Source) -> dict:
    """What the SDK must show for a source whose points are in increasing step order."""
    out = {}
    for (name, ctx), points in source.items():
        not_nan = [v for _, v, _ in points if not math.isnan(v)]
        out[(name, str(sorted(({'subset': ctx} if ctx else {}).items())))] = {
            'steps': [s for s, _, _ in points], 'get_metric_steps': [s for s, _, _ in points],
            'values': [v for _, v, _ in points], 'epochs': [NAN] * len(points),  # the SDK shows an epoch-less point's epoch as NaN
            'times': [t for _, _, t in points],
            'first_step': points[0][0], 'last_step': points[-1][0],
            'info': {'first': points[0][1], 'first_step': points[0][0], 'last': points[-1][1],
                     'last_step': points[-1][0], 'min': min(not_nan) if not_nan else None,
                     'max': max(not_nan) if not_nan else None, 'dtype': 'float'},
        }
    return out


SOURCE: Source = {
    ('loss', 'train'): [(s, 1.0 / (s + 1), 1_700_000_000.0 + s * 0.25) for s in range(0, 3000, 3)],
    ('loss', 'validate'): [(s, 2.5 - s * 1e-3, 1_700_000_100.5 + s) for s in range(0, 3000, 100)],
    ('odd values', ''): [(0, NAN, 1.0), (1, INF, 2.0), (2, -INF, 3.0), (3, -0.0, 4.0), (4, 1e308, 5.0),
                         (5, -1e-308, 6.0), (7, NAN, 7.5)],
    ('all nan', ''): [(0, NAN, 10.0), (5, NAN, 11.0)],
    ('single', 'train'): [(42, 3.25, 12.0)],
}


def test_bulk_equals_per_point_through_the_sdk(tmp_path):
    bulk_repo, per_point_repo = str(tmp_path / 'bulk'), str(tmp_path / 'per_point')
    bulk = _read(bulk_repo, _bulk_write(bulk_repo, 'run-a', SOURCE))
    per_point = _read(per_point_repo, _per_point_write(per_point_repo, SOURCE))
    _assert_equal(bulk, per_point)
    _assert_equal(bulk, _expected(SOURCE))


def test_negative_and_huge_steps(tmp_path):
    source = {('steps', ''): [(-(2 ** 40), 1.0, 1.0), (-5, 2.0, 2.0), (-1, 3.0, 3.0), (0, 4.0, 4.0),
                              (2 ** 31 + 7, 5.0, 5.0), (2 ** 52, 6.0, 6.0), (2 ** 62, 7.0, 7.0)]}
    repo = str(tmp_path / 'repo')
    _assert_equal(_read(repo, _bulk_write(repo, 'run-steps', source)), _expected(source))


def test_rewrite_with_more_points_adds_without_duplicates(tmp_path):
    repo = str(tmp_path / 'repo')
    first = {('acc', 'train'): [(s, s / 100, 1000.0 + s) for s in range(100)]}
    more = {('acc', 'train'): [(s, s / 100, 1000.0 + s) for s in range(150)],
            ('acc', 'validate'): [(s, -s / 10, 2000.0 + s) for s in range(0, 150, 10)]}
    run_hash = _bulk_write(repo, 'run-grow', first)
    _assert_equal(_read(repo, run_hash), _expected(first))
    assert _bulk_write(repo, 'run-grow', more) == run_hash
    _assert_equal(_read(repo, run_hash), _expected(more))
    assert len(list(open_repo(repo, create=False).iter_runs())) == 1


def test_rewrite_equals_a_single_per_point_write(tmp_path):
    """A run written twice in bulk (the second time with more points) reads back as the per-point path
    writing the final data once."""
    grown = {k: v + [(v[-1][0] + 1 + i, float(i), v[-1][2] + 1 + i) for i in range(5)] for k, v in SOURCE.items()}
    bulk_repo, per_point_repo = str(tmp_path / 'bulk'), str(tmp_path / 'per_point')
    _bulk_write(bulk_repo, 'run-b', SOURCE)
    bulk = _read(bulk_repo, _bulk_write(bulk_repo, 'run-b', grown))
    _assert_equal(bulk, _read(per_point_repo, _per_point_write(per_point_repo, grown)))


@pytest.mark.parametrize('n', [1, 20_000])
def test_sizes(tmp_path, n):
    source = {('big', 'train'): [(s * 2, math.sin(s), 1_600_000_000.0 + s / 8) for s in range(n)]}
    repo = str(tmp_path / 'repo')
    _assert_equal(_read(repo, _bulk_write(repo, f'run-{n}', source)), _expected(source))


@pytest.mark.parametrize('writer', ['tbx', 'tf2'])
def test_inline_scalar_decode_equals_the_decoder(tmp_path, writer):
    """``read_event_stream`` decodes the two scalar encodings inline; the result must be what
    ``EventDecoder`` gives event by event (same tags, steps, wall times, values, offsets)."""
    from connectors.tfrecord import Record, iter_records
    from samples.tensorboard_logs import write_tbx, write_tf2
    from tensorboard.compat.proto import event_pb2
    from transforms.events import EventDecoder, read_event_stream

    (write_tbx if writer == 'tbx' else write_tf2)(str(tmp_path), ('loss', 'acc/top1'), 300)
    (path,) = [p for p in tmp_path.iterdir() if 'tfevents' in p.name]
    with open(path, 'rb') as stream:
        chunks = [c for c in read_event_stream(stream, str(path), {'entry': 'x'}, chunk_points=250)
                  if isinstance(c, list)]
    assert len(chunks) > 1  # chunking on the inline path
    got: Dict[str, List[tuple]] = {}
    for chunk in chunks:
        for series in chunk:
            assert series.kind == METRIC and series.context == {'entry': 'x'}
            got.setdefault(series.name, []).extend(
                zip(series.steps, series.wall_times, series.values, series.positions))
    want: Dict[str, List[tuple]] = {}
    decoder = EventDecoder()
    with open(path, 'rb') as stream:
        for record in iter_records(stream):
            assert isinstance(record, Record)
            event = event_pb2.Event.FromString(record.payload)
            for kind, tag, value in decoder.decode(event):
                want.setdefault(tag, []).append((event.step, event.wall_time, value, record.offset))
    assert got == want and sorted(got) == ['acc/top1', 'loss'] and len(got['loss']) == 300


def _container_items(repo_path: str, name: str, run_hash: str) -> Dict[bytes, bytes]:
    from aim.storage.rockscontainer import RocksContainer
    from aim.storage.utils import BLOB
    import os
    aim_dir = open_repo(repo_path, create=False).path  # the repo's .aim directory
    container = RocksContainer(os.path.join(aim_dir, name, 'chunks', run_hash), read_only=True)
    try:
        return {k: (bytes(v.load()) if isinstance(v, BLOB) else v) for k, v in container.items()}
    finally:
        container.close()


def _rich_run(identity: str) -> RunData:
    """Metrics, text and distribution sequences, attributes, tags and a description: all a run holds."""
    series = [_series(name, ctx, points) for (name, ctx), points in sorted(SOURCE.items())]
    text = Series('text', 'notes', {'subset': 'train'})
    for step in range(3):
        text.append(step, 1_700_000_000.0 + step, f'step {step} text', step)
    dist = Series('distribution', 'weights', {})
    for step in range(2):
        dist.append(step, 1_700_000_500.0 + step, {'edges': [0.0, 0.5, 2.0, 3.0], 'counts': [1.0, step, 4.0]}, step)
    spec = RunSpec(identity=identity, name='run with everything', experiment='fast-path',
                   attributes={'hparams': {'lr': 0.01, 'layers': [64, 32]}, 'source': 'x'},
                   description='a description', tags=['alpha', 'beta=1'],
                   creation_time=1_699_999_999.5, end_time=1_700_003_000.25)
    return RunData(spec, series + [text, dist])


def test_local_fast_path_leaves_the_tree_aim_run_leaves(tmp_path):
    """``LocalRun`` (``connectors.aim_local_run``, local repos) skips ``aim.Run``; the RocksDB keys and
    values it leaves, and the props the SDK shows after ``index_runs``, must be those of the ``aim.Run``
    path (used for remote repos), byte for byte, including a re-write of the same run."""
    fast_repo, aim_run_repo = str(tmp_path / 'fast'), str(tmp_path / 'aim_run')
    data = _rich_run('run-everything')
    earlier = _rich_run('run-everything')
    earlier.spec.tags = ['alpha', 'beta=0', 'gone']  # the source's tags when first converted
    for repo_path in (fast_repo, aim_run_repo):
        open_repo(repo_path)
        for version in (earlier, data, data):  # re-runs rewrite the same run, tags included
            writer = AimRunWriter(repo_path)
            if repo_path == fast_repo:
                result = writer.write(version)
            else:
                result = writer._write_with_aim_run(run_hash_for(version.spec.identity), version)
            props = [result.props] if hasattr(result, 'props') and result.props else []
            index_runs(repo_path, [run_hash_for(data.spec.identity)], props)
    run_hash = run_hash_for(data.spec.identity)
    for name in ('meta', 'seqs'):
        fast, slow = _container_items(fast_repo, name, run_hash), _container_items(aim_run_repo, name, run_hash)
        assert sorted(fast) == sorted(slow), name
        differing = [k for k in fast if fast[k] != slow[k]]
        assert not differing, (name, [(k, fast[k], slow[k]) for k in differing[:3]])
    views = []
    for repo_path in (fast_repo, aim_run_repo):
        run = Run(run_hash, repo=open_repo(repo_path, create=False), read_only=True)
        views.append({'name': run.name, 'experiment': run.experiment, 'description': run.description,
                      'tags': sorted(run.props.tags), 'created': run.creation_time, 'ended': run.end_time,
                      'active': run.active, 'params': run[...],
                      'texts': [t.data for t in run.get_text_sequence('notes', Context({'subset': 'train'})).data.values_list()[0]]})
    assert views[0] == views[1]
    assert views[0]['tags'] == ['alpha', 'beta=1'] and views[0]['name'] == 'run with everything'
    assert abs(views[0]['created'] - 1_699_999_999.5) < 1e-3 and views[0]['ended'] == 1_700_003_000.25
    assert views[0]['active'] is False
    assert views[0]['texts'] == ['step 0 text', 'step 1 text', 'step 2 text']



def _index_items(repo_path: str) -> Dict[bytes, bytes]:
    from aim.storage.rockscontainer import RocksContainer
    from aim.storage.utils import BLOB
    import os
    container = RocksContainer(os.path.join(open_repo(repo_path, create=False).path, 'meta', 'index'),
                               read_only=True)
    try:
        return {k: (b'blob:' + bytes(v.load()) if isinstance(v, BLOB) else v) for k, v in container.items()}
    finally:
        container.close()


def test_index_from_the_writers_records_equals_aims_finalize(tmp_path):
    """``index_runs`` indexes a run from the meta records its writer kept (no reopening); the repo index
    must hold exactly what Aim's ``finalize`` of the run's meta container leaves, also after a re-write
    that drops a sequence from a run whose meta container was deleted (so only the index's clearing
    of the run's prefix removes its stale traces), with another run indexed alongside."""
    by_records, by_finalize = str(tmp_path / 'records'), str(tmp_path / 'finalize')
    first = _rich_run('indexed')
    first.spec.tags = ['alpha', 'old']
    again = _rich_run('indexed')
    again.series = again.series[1:]
    other = _rich_run('other')
    for repo_path in (by_records, by_finalize):
        open_repo(repo_path)
        for batch in ([first, other], [again]):
            if batch == [again]:  # the run's chunk is gone (deleted by hand): the index keeps stale traces
                shutil.rmtree(os.path.join(open_repo(repo_path, create=False).path, 'meta', 'chunks',
                                           run_hash_for('indexed')))
            written = [AimRunWriter(repo_path).write(data) for data in batch]
            assert all(w.meta_records for w in written)
            records = {w.hash: w.meta_records for w in written} if repo_path == by_records else None
            index_runs(repo_path, [w.hash for w in written], [w.props for w in written], records)
    got, want = _index_items(by_records), _index_items(by_finalize)
    assert sorted(got) == sorted(want) and got == want
    assert any(run_hash_for('other').encode() in k for k in got)
    assert any(v.startswith(b'blob:') for v in got.values())  # blob values (distribution edges) included
    dropped = first.series[0].name.encode()
    assert not any(dropped in k and run_hash_for('indexed').encode() in k for k in got)
    repo = open_repo(by_records, create=False)
    assert sorted(r.name for r in repo.iter_runs()) == ['run with everything', 'run with everything']


def _png(seed: int) -> bytes:
    from samples.tensorboard_plugins import png_bytes, sample_image

    return png_bytes(sample_image(seed, height=4, width=3))


def test_bulk_sequences_equal_per_point_track_key_by_key(tmp_path):
    """Metric sequences (NaN, infinities, huge values included) and object sequences (text,
    distributions, images with one and several samples a step), each written in one batch, leave
    exactly the RocksDB keys and values of one ``RunTracker._track`` call per point."""
    from connectors.aim_objects import OBJECT_CONVERTERS

    rich = _rich_run('objects')
    images = Series('image', 'samples', {'subset': 'validate'})
    for step in (0, 3, 7):
        samples = [{'data': _png(step + i), 'format': 'png', 'caption': f'c{i}'} for i in range(1 if step != 3 else 2)]
        images.append(step, 1_700_000_900.0 + step, samples, step)
    objects = [s for s in rich.series if s.kind != METRIC] + [images]
    metrics = [s for s in rich.series if s.kind == METRIC]
    data = RunData(RunSpec(identity='objects', name='objects', experiment='bulk'), metrics + objects)

    bulk_repo, per_point_repo = str(tmp_path / 'bulk'), str(tmp_path / 'per_point')
    open_repo(bulk_repo)
    bulk_hash = AimRunWriter(bulk_repo).write(data).hash

    repo = open_repo(per_point_repo)
    run = Run(repo=repo, system_tracking_interval=None, capture_terminal_logs=False)
    for series in metrics:
        for step, wall_time, value in zip(series.steps, series.wall_times, series.values):
            run._tracker._track(value, wall_time, series.name, int(step), None, context=series.context)
    for series in objects:
        converted = [OBJECT_CONVERTERS[series.kind](p) for p in series.values]
        if any(isinstance(o, list) for o in converted):
            converted = [o if isinstance(o, list) else [o] for o in converted]
        for step, wall_time, obj in zip(series.steps, series.wall_times, converted):
            run._tracker._track(obj, wall_time, series.name, int(step), None, context=series.context)
    per_point_hash = run.hash
    run.close()

    bulk_seqs = {k.replace(bulk_hash.encode(), b'HASH'): v
                 for k, v in _container_items(bulk_repo, 'seqs', bulk_hash).items()}
    per_point_seqs = {k.replace(per_point_hash.encode(), b'HASH'): v
                      for k, v in _container_items(per_point_repo, 'seqs', per_point_hash).items()}
    assert len(bulk_seqs) > 50 and bulk_seqs == per_point_seqs

    def sequence_meta(repo_path, run_hash):
        parts = (b'\xfetraces\xfe', b'\xfetyped_traces\xfe', b'\xfecontexts\xfe', b'\xfetraces_types\xfe')
        return {k.replace(run_hash.encode(), b'HASH'): v for k, v in _container_items(repo_path, 'meta', run_hash).items()
                if any(part in k for part in parts)}

    bulk_meta, per_point_meta = sequence_meta(bulk_repo, bulk_hash), sequence_meta(per_point_repo, per_point_hash)
    assert len(bulk_meta) > 20 and bulk_meta == per_point_meta


def test_a_run_opened_ahead_is_written_as_one_opened_in_line(tmp_path):
    """``prepare`` opens a run's containers in the background; the ``write`` that follows uses them and
    leaves exactly what a write without ``prepare`` leaves."""
    ahead, in_line = str(tmp_path / 'ahead'), str(tmp_path / 'in_line')
    data = _rich_run('opened ahead')
    run_hash = run_hash_for(data.spec.identity)
    for repo_path in (ahead, in_line):
        open_repo(repo_path)
        writer = AimRunWriter(repo_path)
        if repo_path == ahead:
            writer.prepare(data)
            assert list(writer._opening) == [run_hash]
        writer.write(data)
        assert not writer._opening
        writer.discard_prepared()  # nothing left to discard
    for name in ('meta', 'seqs'):
        assert _container_items(ahead, name, run_hash) == _container_items(in_line, name, run_hash), name


def test_a_run_prepared_and_never_written_leaves_nothing(tmp_path):
    """After a failure, runs prepared but not written are discarded: a new run's containers are removed
    (no empty run appears), an existing run is left as it was, and both can be written again."""
    repo_path = str(tmp_path / 'repo')
    repo = open_repo(repo_path)
    existing, new = _rich_run('written before'), _rich_run('never written')
    AimRunWriter(repo_path).write(existing)
    before = {name: _container_items(repo_path, name, run_hash_for('written before')) for name in ('meta', 'seqs')}
    writer = AimRunWriter(repo_path)
    writer.prepare(existing)
    writer.prepare(new)
    writer.discard_prepared()
    for name in ('meta', 'seqs'):
        assert not os.path.exists(os.path.join(repo.path, name, 'chunks', run_hash_for('never written')))
        assert _container_items(repo_path, name, run_hash_for('written before')) == before[name]
    again = AimRunWriter(repo_path)  # the run locks were released
    assert again.write(new).points and again.write(existing).points


def test_a_rewritten_object_sequence_keeps_no_stale_blob(tmp_path):
    """An image sequence rewritten with fewer steps leaves exactly what a first write of the new one
    leaves: the old steps' records and their blobs (image bytes live in the container's blob domain)
    are gone."""
    def run_with_images(steps):
        images = Series('image', 'samples', {})
        for step in steps:
            images.append(step, 1_700_000_000.0 + step, [{'data': _png(step), 'format': 'png', 'caption': ''}], step)
        return RunData(RunSpec(identity='images', name='images', experiment='bulk'), [images])

    rewritten, fresh = str(tmp_path / 'rewritten'), str(tmp_path / 'fresh')
    open_repo(rewritten)
    open_repo(fresh)
    AimRunWriter(rewritten).write(run_with_images([0, 1, 2, 3]))
    AimRunWriter(rewritten).write(run_with_images([0, 2]))
    AimRunWriter(fresh).write(run_with_images([0, 2]))
    run_hash = run_hash_for('images')
    got, want = _container_items(rewritten, 'seqs', run_hash), _container_items(fresh, 'seqs', run_hash)
    assert sorted(got) == sorted(want) and got == want
    assert sum(1 for key in got if key.startswith(b'BLOBS')) == 2  # one image's bytes per step


def test_the_write_dofn_opens_each_run_one_write_ahead(tmp_path):
    """``WriteRunsFn`` writes a run when the next one arrives (or at the bundle's end), that next run's
    containers having been opened meanwhile; each output keeps its own run's window. After a failure
    (no ``finish_bundle``), teardown discards the run held, and it does not appear in the repo."""
    from apache_beam.transforms.window import GlobalWindow, IntervalWindow
    from apache_beam.utils.windowed_value import WindowedValue

    from connectors.aim_kept_records import RecordFiles
    from transforms.aim_write import WriteRunsFn

    repo_path = str(tmp_path / 'repo')
    repo = open_repo(repo_path)
    fn = WriteRunsFn(repo_path)
    fn.setup()
    fn.start_bundle()
    first, second = _rich_run('first'), _rich_run('second')
    first_window, second_window = IntervalWindow(0, 10), GlobalWindow()
    assert list(fn.process((first, []), first_window, 5)) == []  # held, its containers opening
    assert list(fn._writer._opening) == [run_hash_for('first')]
    written = list(fn.process((second, []), second_window, 7))
    assert list(fn._writer._opening) == [run_hash_for('second')]  # the first's open was taken by its write
    written += list(fn.finish_bundle())
    assert all(isinstance(out, WindowedValue) for out in written)
    assert [(out.value['hash'], out.windows, out.timestamp.micros) for out in written] == [
        (run_hash_for('first'), [first_window], 5_000_000), (run_hash_for('second'), [second_window], 7_000_000)]
    index_runs(repo_path, [out.value['hash'] for out in written], [out.value['props'] for out in written],
               RecordFiles({out.value['hash']: out.value['kept'] for out in written}))  # records kept in files

    fn.start_bundle()
    assert list(fn.process((_rich_run('never finished'), []), second_window, 0)) == []
    fn.teardown()  # the bundle failed: no finish_bundle
    assert not os.path.exists(os.path.join(repo.path, 'seqs', 'chunks', run_hash_for('never finished')))
    runs = {run.hash: run for run in open_repo(repo_path, create=False).iter_runs()}
    assert sorted(runs) == sorted([run_hash_for('first'), run_hash_for('second')])
    texts = runs[run_hash_for('first')].get_text_sequence('notes', Context({'subset': 'train'}))
    assert [t.data for t in texts.data.values_list()[0]] == ['step 0 text', 'step 1 text', 'step 2 text']
