"""TensorBoard ``Event`` protos → typed points, without TensorFlow.

Layered like TensorBoard's own loader: bytes (``connectors.tfrecord``) → ``Event`` proto (here) →
typed values (``decode_value``). Every summary value is either decoded into a point of some kind or
counted as skipped under its plugin's name; nothing is dropped silently.

Kinds: ``metric`` (a float), and the object kinds whose decoders ``transforms.plugins`` lists (images,
histograms, text, audio, hparams), each a plain picklable payload that the sink turns into an Aim
object. ``VALUE_DECODERS`` / ``PLUGIN_DECODERS`` are built here from both, once, at import.
"""
from __future__ import annotations

import collections
from array import array
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, types_pb2

from connectors.tfrecord import Problem, RecordBatch, iter_record_batches
from transforms import plugins
from transforms.scalar_columns import SCALAR_TENSOR, SIMPLE_VALUE, ScalarColumns, match_scalars
from transforms.summary_values import UnsupportedValue, tensor_to_ndarray
from runmodel import METRIC, Series, Skip

__all__ = [
    'UnsupportedValue', 'decode_value', 'EventDecoder', 'read_event_stream', 'tensor_to_ndarray',
    'VALUE_DECODERS', 'PLUGIN_DECODERS',
]


def _scalar_tensor(value, metadata) -> Tuple[str, float]:
    array = tensor_to_ndarray(value.tensor)
    if array.size != 1 or array.dtype.kind not in 'fiub':
        raise UnsupportedValue('scalars', f'scalars tensor of shape {array.shape} and dtype {array.dtype}')
    return METRIC, float(array.reshape(()).item())


def _simple_value(value, metadata) -> Tuple[str, float]:
    return METRIC, float(value.simple_value)


# summary.value oneof field name -> decoder(value, metadata) -> (kind, payload): scalars here, the
# object kinds from transforms.plugins
VALUE_DECODERS: Dict[Optional[str], Callable[[Any, Any], Tuple[str, Any]]] = {
    'simple_value': _simple_value,
    **plugins.VALUE_DECODERS,
}
# plugin name of a tensor summary -> decoder(value, metadata) -> (kind, payload)
PLUGIN_DECODERS: Dict[str, Callable[[Any, Any], Tuple[str, Any]]] = {
    'scalars': _scalar_tensor,
    **plugins.PLUGIN_DECODERS,
}
# Event fields that carry data runferry does not convert, and the plugin name they are reported under.
_SKIPPED_EVENT_FIELDS = {'graph_def': 'graphs', 'meta_graph_def': 'graphs', 'tagged_run_metadata': 'graphs'}


def decode_value(value, metadata) -> Tuple[str, Any]:
    """One ``Summary.Value`` → (kind, payload); raises ``UnsupportedValue`` naming the plugin."""
    field = value.WhichOneof('value')
    if field == 'tensor':
        plugin = metadata.plugin_data.plugin_name if metadata is not None else ''
        decoder = PLUGIN_DECODERS.get(plugin)
        if decoder is None:
            raise UnsupportedValue(plugin or 'tensor (no plugin metadata)')
        return decoder(value, metadata)
    decoder = VALUE_DECODERS.get(field)
    if decoder is None:
        raise UnsupportedValue({'image': 'images', 'histo': 'histograms', 'audio': 'audio'}.get(field, str(field)))
    return decoder(value, metadata)


class EventDecoder:
    """Decodes the events of one file in order; remembers each tag's plugin metadata.

    TF2's ``tf.summary`` writes a tag's ``SummaryMetadata`` only with its first event, so the
    metadata must be carried from that event to the tag's later ones.
    """

    def __init__(self):
        self._metadata: Dict[str, Any] = {}

    def decode(self, event) -> Iterator[Union[Tuple[str, str, Any], UnsupportedValue]]:
        """Yield (kind, tag, payload) per decoded value, or the ``UnsupportedValue`` of a skipped one."""
        what = event.WhichOneof('what')
        if what == 'summary':
            for value in event.summary.value:
                if value.HasField('metadata'):
                    self._metadata[value.tag] = value.metadata
                try:
                    kind, payload = decode_value(value, self._metadata.get(value.tag))
                except UnsupportedValue as unsupported:
                    yield unsupported
                    continue
                except Exception as error:  # a value whose bytes do not fit its declared type
                    yield UnsupportedValue('undecodable', f'{value.tag}: {type(error).__name__}: {error}')
                    continue
                yield kind, value.tag, payload
        elif what in _SKIPPED_EVENT_FIELDS:
            yield UnsupportedValue(_SKIPPED_EVENT_FIELDS[what])


class FileStats(collections.Counter):
    """Counts of one file's reading: records, events, points by kind, skips by reason."""


def read_event_stream(
    stream: BinaryIO,
    source: str,
    context: Optional[Dict[str, str]],
    chunk_points: int = 100_000,
    stats: Optional[collections.Counter] = None,
) -> Iterator[Union[List[Series], Skip]]:
    """Read one event file: yield chunks (lists of ``Series``, about ``chunk_points`` points each)
    and ``Skip`` dead letters. ``stats`` (if given) receives the counts.

    Records are decoded in batches: the scalar records of a batch column-wise (``scalar_columns``),
    every other record one by one through its ``Event`` proto, in file order."""
    stats = stats if stats is not None else collections.Counter()
    reader = _BatchDecoder(source, context, stats)
    try:
        for item in iter_record_batches(stream, max(1, min(chunk_points, _BATCH_RECORDS))):
            if item.__class__ is Problem:
                stats[f'records_skipped:{item.kind}'] += 1
                yield Skip(source, item.reason, 'record', offset=item.offset)
                continue
            yield from reader.decode(item)
            if (reader.pending >= chunk_points or reader.pending_bytes >= CHUNK_BYTES
                    or len(reader.columns) >= CHUNK_SERIES):
                yield reader.take_chunk()
        if reader.columns:
            yield reader.take_chunk()
    finally:  # what was read is counted even if the stream fails part-way (the chunk in hand is lost)
        stats['records_read'] += reader.records_read
        for entry in reader.columns.values():
            stats[f'points_read:{entry[0].kind}'] += len(entry[0])
    for reason, count in sorted(reader.unsupported.items()):
        stats['points_skipped:unsupported'] += count
        yield Skip(source, reason, 'point', count=count)


_BATCH_RECORDS = 4096
# A chunk also ends at this many bytes of object payloads (large images), or this many series (runs of
# many tags: a Series costs ~1 KB before its first point), so that it stays small whatever the run holds.
CHUNK_BYTES = 64 << 20
CHUNK_SERIES = 20_000


class _BatchDecoder:
    """The state of one file's decoding: its series in progress (``columns``), the per-tag plugin
    metadata (carried from a tag's first event to its later ones), and the counts."""

    def __init__(self, source: str, context: Optional[Dict[str, str]], stats: collections.Counter):
        self.source = source
        self.context = context
        self.stats = stats
        self.decoder = EventDecoder()
        self.tag_metadata = self.decoder._metadata  # the inline path keeps the decoder's metadata current
        # The two scalar encodings are decoded without a call per value (column-wise, or inline)
        # unless the decoder table holds another decoder for them.
        self.inline_simple = VALUE_DECODERS.get('simple_value') is _simple_value
        self.inline_tensor = PLUGIN_DECODERS.get('scalars') is _scalar_tensor
        # (kind, tag) -> (series, and the bound appends of its columns)
        self.columns: Dict[Tuple[str, str], tuple] = {}
        self.unsupported: Dict[str, int] = collections.Counter()
        self.records_read = 0
        self.pending = 0
        self.pending_bytes = 0

    def take_chunk(self) -> List[Series]:
        chunk = [entry[0] for entry in self.columns.values()]
        self.columns.clear()
        for part in chunk:
            self.stats[f'points_read:{part.kind}'] += len(part)
        self.pending = self.pending_bytes = 0
        return chunk

    def _target(self, kind: str, tag: str) -> tuple:
        entry = self.columns.get((kind, tag))
        if entry is None:
            part = Series(kind, tag, dict(self.context or {}), source=self.source)
            entry = self.columns[(kind, tag)] = (part, part.steps.append, part.wall_times.append,
                                                 part.values.append, part.positions.append)
        return entry

    def decode(self, batch: RecordBatch) -> Iterator[Skip]:
        """Decode a batch of records into ``columns``; yield dead letters for undecodable ones."""
        offsets, payloads = batch
        self.records_read += len(payloads)
        fast = self._match(payloads)
        events = self._parse(payloads, fast)
        if fast is not None and not self._tensor_rows_are_scalars(fast, events):
            fast, events = None, self._parse(payloads, None)  # rare: everything one by one, in order
        for i, event in events:
            if isinstance(event, DecodeError):
                self.stats['records_skipped:undecodable'] += 1
                yield Skip(self.source, f'record is not an Event proto: {event}', 'record', offset=offsets[i])
                continue
            self._decode_event(event, offsets[i])
        if fast is not None and len(fast.index):
            self._append_columns(fast, offsets)

    def _match(self, payloads: List[bytes]) -> Optional[ScalarColumns]:
        if not (self.inline_simple or self.inline_tensor) or len(payloads) < _MIN_COLUMN_BATCH:
            return None
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        starts = np.zeros(len(payloads), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        fast = match_scalars(b''.join(payloads), starts, lengths)
        if not (self.inline_simple and self.inline_tensor):
            fast = fast.select(fast.form == (SIMPLE_VALUE if self.inline_simple else SCALAR_TENSOR))
        return fast

    def _parse(self, payloads: List[bytes], fast: Optional[ScalarColumns]) -> List[Tuple[int, Any]]:
        """(index, Event or DecodeError) of every record not decoded column-wise, in order."""
        rest = np.ones(len(payloads), dtype=bool)
        if fast is not None:
            rest[fast.index] = False
        from_string = event_pb2.Event.FromString
        out = []
        for i in np.flatnonzero(rest).tolist():
            try:
                out.append((i, from_string(payloads[i])))
            except DecodeError as error:
                out.append((i, error))
        return out

    def _tensor_rows_are_scalars(self, fast: ScalarColumns, events: List[Tuple[int, Any]]) -> bool:
        """Whether each column-wise scalar tensor's tag has ``scalars`` plugin metadata at its record,
        as the one-by-one path would find (metadata comes from earlier records of the other kind)."""
        tensor_rows = np.flatnonzero(fast.form == SCALAR_TENSOR)
        if not len(tensor_rows):
            return True
        changes: Dict[str, List[Tuple[int, Any]]] = collections.defaultdict(list)
        for i, event in events:
            if not isinstance(event, DecodeError) and event.WhichOneof('what') == 'summary':
                for value in event.summary.value:
                    if value.HasField('metadata'):
                        changes[value.tag].append((i, value.metadata))
        for tag_id in np.unique(fast.tag_id[tensor_rows]):
            tag = fast.tags[tag_id]
            rows = fast.index[tensor_rows[fast.tag_id[tensor_rows] == tag_id]]
            history = changes.get(tag, [])
            at = np.searchsorted(np.array([i for i, _ in history], dtype=np.int64), rows) - 1
            metadata = [history[k][1] if k >= 0 else self.tag_metadata.get(tag) for k in np.unique(at)]
            if any(m is None or m.plugin_data.plugin_name != 'scalars' for m in metadata):
                return False
        return True

    def _decode_event(self, event, offset: int) -> None:
        tag_metadata = self.tag_metadata
        inline = []
        if event.WhichOneof('what') == 'summary':
            for value in event.summary.value:
                tag = value.tag
                field = value.WhichOneof('value')
                if field == 'simple_value' and self.inline_simple:
                    if value.HasField('metadata'):
                        tag_metadata[tag] = value.metadata
                    inline.append((tag, float(value.simple_value)))
                    continue
                if field == 'tensor' and self.inline_tensor:
                    metadata = value.metadata if value.HasField('metadata') else tag_metadata.get(tag)
                    tensor = value.tensor
                    if (metadata is not None and metadata.plugin_data.plugin_name == 'scalars'
                            and tensor.dtype == _DT_FLOAT and not tensor.tensor_content
                            and len(tensor.float_val) == 1 and not tensor.tensor_shape.dim):
                        if value.HasField('metadata'):
                            tag_metadata[tag] = metadata
                        inline.append((tag, float(tensor.float_val[0])))
                        continue
                inline = None  # something else: the whole event goes through the decoder
                break
        else:
            inline = None
        step, wall_time = event.step, event.wall_time
        if inline is not None:
            for tag, number in inline:
                entry = self._target(METRIC, tag)
                entry[1](step)
                entry[2](wall_time)
                entry[3](number)
                entry[4](offset)
            self.pending += len(inline)
            return
        for decoded in self.decoder.decode(event):
            if isinstance(decoded, UnsupportedValue):
                self.unsupported[str(decoded)] += 1
                continue
            kind, tag, payload = decoded
            entry = self._target(kind, tag)
            entry[1](step)
            entry[2](wall_time)
            entry[3](payload)
            entry[4](offset)
            self.pending += 1
            self.pending_bytes += _payload_bytes(payload)

    def _append_columns(self, fast: ScalarColumns, record_offsets: List[int]) -> None:
        offsets = np.asarray(record_offsets, dtype=np.int64)[fast.index]
        for tag_id in np.unique(fast.tag_id):
            rows = np.flatnonzero(fast.tag_id == tag_id)
            part = self._target(METRIC, fast.tags[tag_id])[0]
            before = len(part)
            part.steps.frombytes(fast.steps[rows].tobytes())
            part.wall_times.frombytes(fast.wall_times[rows].tobytes())
            part.values.frombytes(fast.values[rows].tobytes())
            part.positions.frombytes(offsets[rows].tobytes())
            if before and part.positions[before - 1] > part.positions[before]:
                _sort_by_position(part)  # points of this batch decoded one by one came after some of these
        self.pending += len(fast.index)


def _payload_bytes(payload: Any) -> int:
    """About how many bytes an object point holds (image and audio samples, text; others are small)."""
    if isinstance(payload, list):
        return sum(len(sample.get('data', b'')) for sample in payload if isinstance(sample, dict))
    if isinstance(payload, (str, bytes)):
        return len(payload)
    return 0


_MIN_COLUMN_BATCH = 16  # below this, one by one is as fast
_DT_FLOAT = types_pb2.DT_FLOAT


_COLUMN_DTYPES = {'q': np.int64, 'd': np.float64}


def _sort_by_position(part: Series) -> None:
    """Reorder the part's columns in place: the decoder holds their bound ``append`` methods."""
    order = np.argsort(np.frombuffer(part.positions, dtype=np.int64), kind='stable')
    for name in ('steps', 'wall_times', 'values', 'positions'):
        column = getattr(part, name)
        reordered = np.frombuffer(column, dtype=_COLUMN_DTYPES[column.typecode])[order]
        column[:] = array(column.typecode, reordered.tobytes())

