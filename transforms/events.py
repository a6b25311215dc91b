"""TensorBoard ``Event`` protos → typed points, without TensorFlow.

Layered like TensorBoard's own loader: bytes (``connectors.tfrecord``) → ``Event`` proto (here) →
typed values (``decode_value``). Every summary value is either decoded into a point of some kind or
counted as skipped under its plugin's name; nothing is dropped silently.

Kinds: ``metric`` (a float), and the object kinds registered in ``VALUE_DECODERS`` /
``PLUGIN_DECODERS`` (images, histograms, text, audio, hparams), each a plain picklable payload that
the sink turns into an Aim object.
"""
from __future__ import annotations

import collections
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, types_pb2
from tensorboard.util import tensor_util

from connectors.tfrecord import Problem, Record, iter_records
from transforms.series import METRIC, Series, Skip

__all__ = [
    'UnsupportedValue', 'decode_value', 'EventDecoder', 'read_event_stream', 'tensor_to_ndarray',
    'VALUE_DECODERS', 'PLUGIN_DECODERS',
]


class UnsupportedValue(Exception):
    """A summary value runferry does not convert; ``plugin`` names what it was."""

    def __init__(self, plugin: str, reason: str = ''):
        super().__init__(reason or f'unsupported plugin {plugin!r}')
        self.plugin = plugin


_FAST_DTYPES = {
    types_pb2.DT_FLOAT: ('float_val', np.float32),
    types_pb2.DT_DOUBLE: ('double_val', np.float64),
    types_pb2.DT_INT32: ('int_val', np.int32),
    types_pb2.DT_INT64: ('int64_val', np.int64),
}


def tensor_to_ndarray(tensor) -> np.ndarray:
    """A ``TensorProto`` as a numpy array (fast path for numeric scalars, TensorBoard's util otherwise)."""
    fast = _FAST_DTYPES.get(tensor.dtype)
    if fast is not None:
        field, dtype = fast
        if tensor.tensor_content:
            shape = [d.size for d in tensor.tensor_shape.dim]
            return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)
        repeated = getattr(tensor, field)
        if len(repeated) == 1 and not tensor.tensor_shape.dim:
            return np.asarray(repeated[0], dtype=dtype)
    return tensor_util.make_ndarray(tensor)


def _scalar_tensor(value, metadata) -> Tuple[str, float]:
    array = tensor_to_ndarray(value.tensor)
    if array.size != 1 or array.dtype.kind not in 'fiub':
        raise UnsupportedValue('scalars', f'scalars tensor of shape {array.shape} and dtype {array.dtype}')
    return METRIC, float(array.reshape(()).item())


def _simple_value(value, metadata) -> Tuple[str, float]:
    return METRIC, float(value.simple_value)


# summary.value oneof field name -> decoder(value, metadata) -> (kind, payload)
VALUE_DECODERS: Dict[str, Callable[[Any, Any], Tuple[str, Any]]] = {
    'simple_value': _simple_value,
}
# plugin name of a tensor summary -> decoder(value, metadata) -> (kind, payload)
PLUGIN_DECODERS: Dict[str, Callable[[Any, Any], Tuple[str, Any]]] = {
    'scalars': _scalar_tensor,
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
    and ``Skip`` dead letters, in file order. ``stats`` (if given) receives the counts."""
    stats = stats if stats is not None else collections.Counter()
    decoder = EventDecoder()
    # The two scalar encodings (tensorboardX's ``simple_value``, TF2's float32 scalar tensor of the
    # ``scalars`` plugin) are decoded inline, without a call per value, unless a registry entry has
    # replaced their decoder; an event holding anything else goes through ``decoder.decode`` whole.
    tag_metadata = decoder._metadata  # the inline path keeps the decoder's per-tag metadata current
    inline_simple = VALUE_DECODERS.get('simple_value') is _simple_value
    inline_tensor = PLUGIN_DECODERS.get('scalars') is _scalar_tensor
    dt_float = types_pb2.DT_FLOAT
    from_string = event_pb2.Event.FromString
    # (kind, tag) -> (series, and the bound appends of its columns)
    columns: Dict[Tuple[str, str], tuple] = {}
    unsupported: Dict[str, int] = collections.Counter()
    records_read = 0
    pending = 0

    def take_chunk() -> List[Series]:
        chunk = [entry[0] for entry in columns.values()]
        columns.clear()
        for part in chunk:
            stats[f'points_read:{part.kind}'] += len(part)
        return chunk

    def target_of(kind: str, tag: str) -> tuple:
        part = Series(kind, tag, dict(context or {}), source=source)
        entry = columns[(kind, tag)] = (part, part.steps.append, part.wall_times.append, part.values.append,
                                        part.positions.append)
        return entry

    try:
        for item in iter_records(stream):
            if item.__class__ is Problem:
                stats[f'records_skipped:{item.kind}'] += 1
                yield Skip(source, item.reason, 'record', offset=item.offset)
                continue
            records_read += 1
            offset = item.offset
            try:
                event = from_string(item.payload)
            except DecodeError as error:
                stats['records_skipped:undecodable'] += 1
                yield Skip(source, f'record is not an Event proto: {error}', 'record', offset=offset)
                continue
            inline = []
            if event.WhichOneof('what') == 'summary':
                for value in event.summary.value:
                    tag = value.tag
                    field = value.WhichOneof('value')
                    if field == 'simple_value' and inline_simple:
                        if value.HasField('metadata'):
                            tag_metadata[tag] = value.metadata
                        inline.append((tag, float(value.simple_value)))
                        continue
                    if field == 'tensor' and inline_tensor:
                        metadata = value.metadata if value.HasField('metadata') else tag_metadata.get(tag)
                        tensor = value.tensor
                        if (metadata is not None and metadata.plugin_data.plugin_name == 'scalars'
                                and tensor.dtype == dt_float and not tensor.tensor_content
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
                    entry = columns.get((METRIC, tag)) or target_of(METRIC, tag)
                    entry[1](step)
                    entry[2](wall_time)
                    entry[3](number)
                    entry[4](offset)
                pending += len(inline)
            else:
                for decoded in decoder.decode(event):
                    if isinstance(decoded, UnsupportedValue):
                        unsupported[str(decoded)] += 1
                        continue
                    kind, tag, payload = decoded
                    entry = columns.get((kind, tag)) or target_of(kind, tag)
                    entry[1](step)
                    entry[2](wall_time)
                    entry[3](payload)
                    entry[4](offset)
                    pending += 1
            if pending >= chunk_points:
                yield take_chunk()
                pending = 0
        if columns:
            yield take_chunk()
    finally:
        # what was read is counted even if the stream fails part-way (the chunk in hand is then lost)
        stats['records_read'] += records_read
        for entry in columns.values():
            stats[f'points_read:{entry[0].kind}'] += len(entry[0])
    for reason, count in sorted(unsupported.items()):
        stats['points_skipped:unsupported'] += count
        yield Skip(source, reason, 'point', count=count)


from transforms import plugins as _plugins  # noqa: E402,F401  registers the plugin decoders in every worker
