"""TFRecord framing: CRCs, truncation, corruption and resync, on real event files and framed bytes."""
import io

from hypothesis import given, settings, strategies as st

from connectors.tfrecord import Problem, Record, frame, iter_record_batches, iter_records


def records(data: bytes):
    return list(iter_records(io.BytesIO(data)))


def payloads(items):
    return [i.payload for i in items if isinstance(i, Record)]


PAYLOADS = [b'first', b'', b'x' * 5000, bytes(range(256)), b'last']
DATA = b''.join(frame(p) for p in PAYLOADS)


def test_reads_every_record_with_offsets():
    items = records(DATA)
    assert payloads(items) == PAYLOADS
    offsets = [i.offset for i in items]
    assert offsets[0] == 0 and offsets[1] == len(frame(PAYLOADS[0]))


def test_truncated_last_record_ends_the_file_keeping_the_rest():
    for cut in (1, 3, 4, 10, 15):
        items = records(DATA[:-cut])
        assert payloads(items) == PAYLOADS[:-1]
        assert isinstance(items[-1], Problem) and items[-1].kind == 'truncated'


def test_bad_payload_crc_skips_only_that_record():
    data = bytearray(DATA)
    start = len(frame(PAYLOADS[0])) + len(frame(PAYLOADS[1]))
    data[start + 12 + 100] ^= 0x01  # inside the 5000-byte payload
    items = records(bytes(data))
    assert payloads(items) == [PAYLOADS[0], PAYLOADS[1], PAYLOADS[3], PAYLOADS[4]]
    problem = [i for i in items if isinstance(i, Problem)]
    assert len(problem) == 1 and problem[0].kind == 'payload_crc' and problem[0].offset == start


def test_bad_length_resyncs_at_the_next_record():
    data = bytearray(DATA)
    data[2] ^= 0xFF  # the first record's length
    items = records(bytes(data))
    assert payloads(items) == PAYLOADS[1:]
    assert [i.kind for i in items if isinstance(i, Problem)] == ['length_crc']


def test_a_bad_length_crc_is_caught_for_a_length_seen_before():
    """Length CRCs are remembered per length: a later header of the same length with a damaged CRC
    must still fail it (and one with a damaged length, whose CRC was right for the old one)."""
    same = [bytes([i]) * 40 for i in range(6)]
    frames = [frame(p) for p in same]
    for at in (8, 2):  # the CRC's first byte; a byte of the length itself
        data = bytearray(b''.join(frames))
        data[3 * len(frames[0]) + at] ^= 0x01
        items = records(bytes(data))
        assert payloads(items) == same[:3] + same[4:]
        problems = [i for i in items if isinstance(i, Problem)]
        assert [(p.kind, p.offset) for p in problems] == [('length_crc', 3 * len(frames[0]))]


def test_not_a_tfrecord_file_yields_no_record():
    items = records(b'this is a text file, named like an event file\n' * 20)
    assert payloads(items) == []
    assert items and all(isinstance(i, Problem) for i in items)


def test_empty_stream():
    assert records(b'') == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=12), st.data())
def test_mutations_never_crash_or_invent_records(payload_list, data):
    """Flip, cut or insert bytes anywhere: every record yielded is one that was written."""
    raw = bytearray(b''.join(frame(p) for p in payload_list))
    for _ in range(data.draw(st.integers(0, 4))):
        action = data.draw(st.sampled_from(['flip', 'cut', 'insert']))
        if not raw:
            break
        at = data.draw(st.integers(0, len(raw) - 1))
        if action == 'flip':
            raw[at] ^= data.draw(st.integers(1, 255))
        elif action == 'cut':
            del raw[at:at + data.draw(st.integers(1, 20))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=20))
    written = set(payload_list)
    for item in records(bytes(raw)):
        if isinstance(item, Record):
            assert item.payload in written


class _FailingStream(io.BytesIO):
    """Gives ``good`` bytes in small reads, then fails as a dropped connection would."""

    def __init__(self, data: bytes, good: int):
        super().__init__(data)
        self.good = good

    def read(self, n=-1):
        if self.tell() >= self.good:
            raise OSError('connection reset')
        return super().read(min(n if n >= 0 else self.good, 100, self.good - self.tell()))


def test_records_before_a_read_failure_are_delivered_then_the_error():
    payloads = [f'record {i}'.encode() for i in range(50)]
    data = b''.join(frame(p) for p in payloads)
    good = len(b''.join(frame(p) for p in payloads[:30])) + 5  # 30 whole records, then part of one
    got = []
    try:
        for item in iter_records(_FailingStream(data, good)):
            got.append(item.payload)
        raise AssertionError('the failure was swallowed')
    except OSError as error:
        assert str(error) == 'connection reset'
    assert got == payloads[:30]
    batches = []
    try:
        for batch in iter_record_batches(_FailingStream(data, good), max_records=7):
            batches.append(len(batch.payloads))
    except OSError:
        pass
    assert batches == [7, 7, 7, 7, 2]
