"""Damaged input: everything readable is converted, everything else is reported with its reason,
and read = written + skipped."""
import io
import json
import os

import pytest
from tensorboard.compat.proto import event_pb2

from connectors.event_files import EventFileSource
from connectors.tfrecord import Record, iter_records
from pipelines import tf_to_aim
from samples.tensorboard_logs import write_tbx
from transforms.classify import EventFileAssignment
from runmodel import Skip
from transforms.tensorboard import ReadRunFn
from tests.readback import read_metrics

pytestmark = pytest.mark.slow


def only_file(directory):
    (name,) = [n for n in os.listdir(directory) if 'tfevents' in n]
    return os.path.join(directory, name)


def record_points(path):
    """(offset, [(tag, step)]) of each record of a real, intact event file."""
    with open(path, 'rb') as stream:
        out = []
        for item in iter_records(stream):
            event = event_pb2.Event.FromString(item.payload)
            out.append((item.offset, [(v.tag, event.step) for v in event.summary.value]))
        return out


@pytest.fixture
def damaged_logdir(tmp_path):
    root = tmp_path / 'logs'
    expected = {}
    expected['ok'] = write_tbx(str(root / 'ok'), ('loss',), 20)

    expected['truncated'] = write_tbx(str(root / 'truncated'), ('loss',), 20)
    path = only_file(root / 'truncated')
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:-7])  # a job killed mid-write: the last record is cut
    del expected['truncated'][('loss', 19)]

    expected['flipped'] = write_tbx(str(root / 'flipped'), ('loss',), 20)
    path = only_file(root / 'flipped')
    offset, lost = record_points(path)[8]
    data = bytearray(open(path, 'rb').read())
    data[offset + 12 + 5] ^= 0x5A  # inside the 8th record's payload
    open(path, 'wb').write(bytes(data))
    for key in lost:
        del expected['flipped'][key]
    flipped_offset = offset

    (root / 'empty').mkdir()
    (root / 'empty' / 'events.out.tfevents.1.host').write_bytes(b'')
    (root / 'text').mkdir()
    (root / 'text' / 'events.out.tfevents.2.host').write_text('not an event file at all\n' * 10)
    return root, expected, flipped_offset


def test_damaged_files_keep_every_good_point_and_report_the_rest(damaged_logdir, tmp_path):
    root, expected, flipped_offset = damaged_logdir
    repo, report = tmp_path / 'aim', tmp_path / 'report.json'
    assert tf_to_aim.run(['--logdir', str(root), '--repo', str(repo), '--report', str(report)]) == 0

    metrics = read_metrics(str(repo))
    assert sorted(name for name, _, _ in metrics) == ['flipped', 'ok', 'truncated']
    for run, points in expected.items():
        got = metrics[(run, '{}', 'loss')]
        assert [(s, v) for s, v, _ in got] == sorted((s, v) for (_, s), (v, _) in points.items())

    skipped = [json.loads(line) for line in open(f'{repo}.skipped.jsonl')]
    by_source = {}
    for skip in skipped:
        by_source.setdefault(os.path.basename(os.path.dirname(skip['source'])), []).append(skip)
    assert [s['reason'] for s in by_source['truncated']][0].startswith('truncated record')
    assert by_source['flipped'] == [{'kind': 'record', 'offset': flipped_offset, 'count': 1,
                                     'reason': 'record payload fails its CRC',
                                     'source': only_file(root / 'flipped')}]
    assert by_source['empty'][0]['reason'] == 'empty event file'
    assert by_source['text'] and all(s['kind'] == 'record' for s in by_source['text'])
    assert 'ok' not in by_source

    counters = json.load(open(report))['counters']
    assert counters['points_read'] == counters['points_written'] + counters['points_skipped']
    assert counters['points_written'] == sum(len(p) for p in expected.values())
    assert counters['records_skipped'] >= 3
    assert counters['files_skipped'] == 1  # the empty one; the others had readable or damaged records


def test_strict_exits_1_when_anything_was_skipped(damaged_logdir, tmp_path):
    root, _, _ = damaged_logdir
    assert tf_to_aim.run(['--logdir', str(root), '--repo', str(tmp_path / 'aim'), '--strict']) == 1
    clean = tmp_path / 'clean'
    write_tbx(str(clean / 'run'), ('loss',), 5)
    assert tf_to_aim.run(['--logdir', str(clean), '--repo', str(tmp_path / 'aim2'), '--strict']) == 0


def test_a_file_that_vanishes_after_listing_is_a_dead_letter(tmp_path):
    write_tbx(str(tmp_path / 'logs' / 'run'), ('loss',), 3)
    source = EventFileSource(str(tmp_path / 'logs'))
    (listed,) = source.list_event_files()
    os.remove(tmp_path / 'logs' / listed)
    (data,) = ReadRunFn(source, 'logs').process(('run', [EventFileAssignment('run', None, listed)]))
    out = list(data.items())  # the run's files are read as the writer takes them
    assert len(out) == 1 and isinstance(out[0], Skip)
    assert out[0].reason == 'file vanished between listing and reading'
    assert out[0].source == str(tmp_path / 'logs' / listed)


def test_unsupported_values_are_counted_per_plugin(tmp_path):
    """A custom plugin's tensor summary is read, not converted, and reported under its plugin name."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    directory = tmp_path / 'logs' / 'run'
    writer = EventFileWriter(str(directory))
    for step in range(4):
        value = summary_pb2.Summary.Value(tag='mystery', tensor=tensor_util.make_tensor_proto([1.0, 2.0]))
        value.metadata.plugin_data.plugin_name = 'my_custom_plugin'
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0 + step, summary=summary_pb2.Summary(value=[value])))
    writer.close()
    source = EventFileSource(str(tmp_path / 'logs'))
    (listed,) = source.list_event_files()
    (data,) = ReadRunFn(source, 'logs').process(('run', [EventFileAssignment('run', None, listed)]))
    skips = [o for o in data.items() if isinstance(o, Skip)]
    assert [(s.reason, s.count, s.kind) for s in skips] == [("unsupported plugin 'my_custom_plugin'", 4, 'point')]
