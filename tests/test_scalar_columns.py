"""Column-wise scalar decoding (``transforms.scalar_columns``) gives what decoding every record through
its ``Event`` proto gives: the same series, points, offsets, dead letters and counts, for what real
writers write and for records crafted with TensorBoard's own protobufs to sit just off the fast layout."""
import collections
import io
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

import transforms.events as events
from connectors.tfrecord import frame, iter_records
from transforms.events import read_event_stream


def _read(data: bytes, chunk_points: int, one_by_one: bool):
    """Everything ``read_event_stream`` yields and counts, in comparable form, and how many records
    were decoded column-wise. ``one_by_one`` turns the column-wise path off; otherwise it runs on
    batches of any size."""
    old_min, old_match = events._MIN_COLUMN_BATCH, events.match_scalars
    matched = []

    def counting_match(*args):
        columns = old_match(*args)
        matched.append(len(columns.index))
        return columns

    events._MIN_COLUMN_BATCH, events.match_scalars = (10 ** 9 if one_by_one else 1), counting_match
    try:
        stats = collections.Counter()
        series, skips = collections.defaultdict(list), []
        for item in read_event_stream(io.BytesIO(data), 'f', {'entry': 'x'}, chunk_points, stats):
            if isinstance(item, list):
                for part in item:
                    assert part.context == {'entry': 'x'}
                    points = list(zip(part.steps, part.wall_times, part.values, part.positions))
                    assert [p[3] for p in points] == sorted(p[3] for p in points)  # file order within a part
                    series[(part.kind, part.name)].extend(_comparable(p) for p in points)
            else:
                skips.append(item.to_json())
        return (dict(series), sorted(skips), dict(stats)), sum(matched)
    finally:
        events._MIN_COLUMN_BATCH, events.match_scalars = old_min, old_match


def _comparable(point):
    step, wall_time, value, position = point
    if isinstance(value, float):
        value = ('nan', math.copysign(1.0, value)) if math.isnan(value) else (value, math.copysign(1.0, value))
    return step, struct.pack('<d', wall_time), repr(value), position


def _assert_same(data: bytes, chunk_points: int = 100_000, column_wise: bool = True):
    """Both paths give the same; ``column_wise``: some records did go the column-wise way."""
    fast, matched = _read(data, chunk_points, one_by_one=False)
    slow, none = _read(data, chunk_points, one_by_one=True)
    assert fast == slow
    assert none == 0 and (column_wise is None or (matched > 0) == column_wise)
    return fast


def _scalar_metadata(plugin='scalars'):
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))


def _tensor(value):
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                                  float_val=[value])


def _event(step, wall_time, *values) -> bytes:
    return frame(event_pb2.Event(step=step, wall_time=wall_time, summary=summary_pb2.Summary(value=list(values)))
                 .SerializeToString())


def simple(tag, value, **kw):
    return summary_pb2.Summary.Value(tag=tag, simple_value=value, **kw)


def tensor(tag, value, metadata=None):
    value = summary_pb2.Summary.Value(tag=tag, tensor=_tensor(value))
    if metadata is not None:
        value.metadata.CopyFrom(metadata)
    return value


@pytest.mark.parametrize('writer', ['tbx', 'tf2'])
@pytest.mark.parametrize('chunk_points', [7, 250, 100_000])
def test_real_writers(tmp_path, writer, chunk_points):
    from samples.tensorboard_logs import write_tbx, write_tf2

    (write_tbx if writer == 'tbx' else write_tf2)(str(tmp_path), ('loss', 'acc/top1', 'ü/λ'), 300)
    (path,) = [p for p in tmp_path.iterdir() if 'tfevents' in p.name]
    series, skips, stats = _assert_same(path.read_bytes(), chunk_points)
    assert sorted(name for _, name in series) == ['acc/top1', 'loss', 'ü/λ']
    assert stats['points_read:metric'] == 900 and not skips
    with open(path, 'rb') as stream:
        assert stats['records_read'] == sum(1 for _ in iter_records(stream))


def test_plugins_of_real_writers_between_scalars(tmp_path):
    from samples.tensorboard_plugins import write_tbx_plugins

    write_tbx_plugins(str(tmp_path))
    for path in sorted(p for p in tmp_path.rglob('*') if 'tfevents' in p.name):
        _assert_same(path.read_bytes(), 5, column_wise=None)


def test_records_just_off_the_fast_layout():
    records = [
        _event(0, 1.5, simple('a', 1.0)),
        _event(1, 2.5, simple('a', float('nan')), simple('b', 2.0)),  # two values: one by one
        _event(2, 3.5, simple('a', 3.0, metadata=_scalar_metadata())),  # metadata on a simple value
        _event(-1, 4.5, simple('a', -0.0)),  # negative step: a 10-byte varint
        _event(2 ** 62, 5.5, simple('a', float('inf'))),
        _event(3, 6.5, simple('x' * 127, 1e-45)),  # a tag too long for 1-byte lengths, a subnormal
        _event(4, 7.5, simple('é', 3.4e38)),
        _event(5, 8.5, tensor('t', 0.5)),  # a scalar tensor before its tag's metadata: unsupported
        _event(6, 9.5, tensor('t', 0.25, _scalar_metadata())),  # now it has it
        _event(7, 10.5, tensor('t', 0.125)),
        _event(8, 11.5, tensor('u', 1.0, _scalar_metadata('custom'))),  # another plugin's float tensor
        _event(9, 12.5, tensor('u', 2.0)),
        frame(event_pb2.Event(step=10, wall_time=13.5, file_version='brain.Event:2').SerializeToString()),
        frame(bytes.fromhex('09') + struct.pack('<d', 14.5) + bytes.fromhex('10 00 2a 0a 0a 08 0a 01 61 15')
              + struct.pack('<f', 9.0)),  # an explicit step 0, as protobuf would also read it
        frame(bytes.fromhex('09') + struct.pack('<d', 15.5) + bytes.fromhex('2a 0b 0a 09 0a 02 ff fe 15')
              + struct.pack('<f', 1.0)),  # a tag that is not UTF-8: protobuf refuses the record
        frame(event_pb2.Event.FromString(_event(12, 17.5, simple('a', 12.0))[12:-4]).SerializeToString()
              + bytes.fromhex('52 02 0a 00')),  # source_metadata after the summary: still a scalar
        frame(_event(13, 18.5, simple('a', 13.0))[12:-4] + bytes.fromhex('ff ff')),  # trailing garbage: refused
        _event(11, 16.5, simple('a', 11.0)),
    ]
    for chunk_points in (1, 3, 100):
        series, skips, stats = _assert_same(b''.join(records * 5), chunk_points)
    assert [p[0] for p in series[('metric', 'a')][:6]] == [0, 1, 2, -1, 2 ** 62, 0]
    assert stats['records_skipped:undecodable'] == 10
    assert [p[0] for p in series[('metric', 'a')][6:9]] == [12, 11, 0]
    assert any('custom' in s for s in skips) and any('no plugin metadata' in s for s in skips)



def test_points_after_a_reordered_batch_are_kept():
    """Records of one tag decoded column-wise and one by one in the same batch are put in file order;
    the tag's later points (next batch) must still land in its series. Records without a wall time
    (0, omitted by protobuf) do not match the column layout; the one with a wall time does."""
    records = [_event(0, 0.0, simple('a', 0.0)), _event(0, 0.0, simple('a', 0.0)), _event(0, 1.0, simple('a', 0.0)),
               _event(0, 0.0, tensor('t', 0.0)), _event(0, 0.0, simple('a', 0.0)), _event(0, 0.0, simple('a', 0.0))]
    series, _, stats = _assert_same(b''.join(records), 5)
    assert [p[3] for p in series[('metric', 'a')]] == [0, 28, 56, 128, 156]
    assert stats['points_read:metric'] == 5

def test_a_damaged_record_between_fast_ones():
    good = [_event(s, 100.0 + s, simple('a', s / 2)) for s in range(40)]
    damaged = bytearray(b''.join(good))
    damaged[len(b''.join(good[:20])) + 14] ^= 0xFF  # a payload byte of record 20: its CRC fails
    series, skips, stats = _assert_same(bytes(damaged), 16)
    assert len(series[('metric', 'a')]) == 39 and stats['records_skipped:payload_crc'] == 1


_values = st.one_of(
    st.builds(simple, st.sampled_from(['a', 'b', 'ß', 'long/' + 'x' * 120, 'n\x00', 'n\x00\x00', '\x00']),
              st.floats(width=32)),
    st.builds(tensor, st.sampled_from(['t', 'a']), st.floats(width=32),
              st.sampled_from([None, _scalar_metadata(), _scalar_metadata('other')])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(-2 ** 63, 2 ** 63 - 1), st.floats(allow_nan=False, width=64),
                          st.lists(_values, min_size=1, max_size=2)), min_size=1, max_size=60),
       st.sampled_from([1, 5, 64]))
def test_any_scalar_events(records, chunk_points):
    _assert_same(b''.join(_event(step, wall_time, *values) for step, wall_time, values in records), chunk_points,
                 column_wise=None)
