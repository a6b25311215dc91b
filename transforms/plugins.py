"""TensorBoard plugin summaries → plain payloads: images, histograms, text, audio, hparams.

Each decoder is a pure function ``(Summary.Value, SummaryMetadata | None) -> (kind, payload)`` whose
payload is plain picklable data (bytes, str, lists, dicts), never an Aim object: payloads cross Beam
process boundaries, and the sink (``connectors.aim_objects``) makes the Aim objects. A value that
cannot be converted raises ``UnsupportedValue`` naming its plugin, so it is counted as skipped.

Payloads (other modules rely on these shapes):

* ``image``: ``[{'data': bytes, 'format': 'png'|'jpeg'|..., 'mode': str, 'width': int, 'height': int,
  'caption': str}, ...]``, one per sample, the encoded bytes exactly as written (never re-encoded);
  mode and size as Pillow reads them from the header (optional: the sink reads them if absent);
* ``distribution``: ``{'edges': [k+1 floats], 'counts': [k floats]}``. TF1 ``HistogramProto`` buckets
  are mapped the way TensorBoard itself does (``tensorboard/data_compat.py``): empty buckets at both
  ends are dropped, the outer edges are ``min``/``max`` (old-style protos use ±DBL_MAX there), but
  in float64 rather than TensorBoard's float32 so no edge is rounded;
* ``text``: ``str``; a scalar or one-element tensor is its string, a vector or matrix is rendered as a
  markdown table (rank > 2: one table per leading index), as TensorBoard's text plugin shows tables;
* ``audio``: ``[{'data': bytes, 'format': 'wav'|'mp3'|'flac', 'caption': str, 'rate': int|None}, ...]``;
* ``hparams``: ``{name: value}`` from the hparams plugin's ``session_start_info``;
* ``hparams_config``: the experiment message (hparam and metric infos) as a JSON-like dict.
  Both hparams kinds become run attributes (``transforms.tensorboard.tensorboard_run_data``), not
  sequences. ``session_end_info`` (a status) is counted as skipped.
"""
from __future__ import annotations

import io
import wave
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from google.protobuf import json_format

from transforms.summary_values import UnsupportedValue, tensor_to_ndarray

__all__ = [
    'IMAGE', 'DISTRIBUTION', 'TEXT', 'AUDIO', 'HPARAMS', 'HPARAMS_CONFIG', 'ATTRIBUTE_KINDS',
    'image_header', 'histogram_proto_buckets', 'render_text', 'VALUE_DECODERS', 'PLUGIN_DECODERS',
]

IMAGE = 'image'
DISTRIBUTION = 'distribution'
TEXT = 'text'
AUDIO = 'audio'
HPARAMS = 'hparams'
HPARAMS_CONFIG = 'hparams_config'
# kinds that are run attributes, not sequences
ATTRIBUTE_KINDS = (HPARAMS, HPARAMS_CONFIG)

_AUDIO_CONTENT_TYPES = {
    'audio/wav': 'wav', 'audio/x-wav': 'wav', 'audio/wave': 'wav', 'audio/vnd.wave': 'wav',
    'audio/mpeg': 'mp3', 'audio/mp3': 'mp3', 'audio/flac': 'flac', 'audio/x-flac': 'flac',
}


def _ndarray(tensor) -> np.ndarray:
    """A ``TensorProto`` as an array of its declared shape (``tensor_to_ndarray``'s fast path returns
    ``tensor_content`` flat)."""
    array = tensor_to_ndarray(tensor)
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    return array.reshape(shape) if array.size == int(np.prod(shape)) else array


# ---------------------------------------------------------------------------------------------- images

def image_header(data: bytes) -> Dict[str, Any]:
    """What Pillow reads from the header of encoded image bytes: ``format`` ('png', 'jpeg', 'gif', ...),
    ``mode`` ('RGB', 'L', ...), ``width`` and ``height``. Read once here, at decode: the sink stores
    them beside the bytes and need not open the image again."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as image:
        if not image.format:
            raise ValueError('unknown image encoding')
        width, height = image.size
        return {'format': image.format.lower(), 'mode': image.mode, 'width': width, 'height': height}


def _image_sample(data: bytes) -> Dict[str, Any]:
    return {'data': data, **image_header(data), 'caption': ''}


def _image_value(value, metadata) -> Tuple[str, List[Dict[str, Any]]]:
    """TF1 / PyTorch ``Summary.Image``: one encoded image per value."""
    return IMAGE, [_image_sample(bytes(value.image.encoded_image_string))]


def _images_tensor(value, metadata) -> Tuple[str, List[Dict[str, Any]]]:
    """TF2 ``images`` plugin: a string vector ``[width, height, image_0, image_1, ...]``."""
    array = _ndarray(value.tensor)
    if array.ndim != 1 or array.size < 2:
        raise UnsupportedValue('images', f'images tensor of shape {array.shape}')
    samples = [bytes(item) for item in array[2:]]
    if not samples:
        raise UnsupportedValue('images', 'images tensor holds no image')
    return IMAGE, [_image_sample(data) for data in samples]


# ------------------------------------------------------------------------------------------ histograms

def histogram_proto_buckets(histo) -> Tuple[List[float], List[float]]:
    """A TF1 ``HistogramProto`` → (edges, counts), as TensorBoard's ``data_compat`` maps it, in float64."""
    counts = list(histo.bucket)
    nonzero = [i for i, count in enumerate(counts) if count > 0]
    if not nonzero:
        return [], []
    start, end = nonzero[0], nonzero[-1]
    inner = [float(limit) for limit in histo.bucket_limit[start:end]]
    return [float(histo.min)] + inner + [float(histo.max)], [float(c) for c in counts[start:end + 1]]


def _histo_value(value, metadata) -> Tuple[str, Dict[str, List[float]]]:
    edges, counts = histogram_proto_buckets(value.histo)
    if not counts:
        raise UnsupportedValue('histograms', 'empty histogram (no non-empty bucket)')
    return DISTRIBUTION, {'edges': edges, 'counts': counts}


def _histograms_tensor(value, metadata) -> Tuple[str, Dict[str, List[float]]]:
    """TF2 ``histograms`` plugin: a k×3 float tensor of (left edge, right edge, count) rows.

    Rows are contiguous (each right edge is the next left edge) in every writer, so the k+1 edges are
    the left edges and the last right edge."""
    array = np.asarray(_ndarray(value.tensor), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise UnsupportedValue('histograms', f'histograms tensor of shape {array.shape}')
    if array.shape[0] == 0:
        raise UnsupportedValue('histograms', 'empty histogram (no bucket)')
    edges = array[:, 0].tolist() + [float(array[-1, 1])]
    return DISTRIBUTION, {'edges': edges, 'counts': array[:, 2].tolist()}


# ------------------------------------------------------------------------------------------------ text

def _cell(item) -> str:
    text = item.decode('utf-8', errors='replace') if isinstance(item, bytes) else str(item)
    return text.replace('|', '\\|').replace('\r\n', '<br>').replace('\n', '<br>')


def _markdown_table(matrix: np.ndarray) -> str:
    columns = matrix.shape[1]
    lines = ['| ' + ' | '.join(' ' for _ in range(columns)) + ' |',
             '|' + '|'.join('---' for _ in range(columns)) + '|']
    lines += ['| ' + ' | '.join(_cell(item) for item in row) + ' |' for row in matrix]
    return '\n'.join(lines)


def render_text(array: np.ndarray) -> str:
    """A string tensor as text: one string as itself; a vector (one column) or a matrix as a markdown
    table; higher ranks as one table per index of the leading dimensions."""
    if array.size == 1:
        item = array.reshape(()).item()
        return item.decode('utf-8', errors='replace') if isinstance(item, bytes) else str(item)
    if array.ndim == 1:
        return _markdown_table(array.reshape(-1, 1))
    if array.ndim == 2:
        return _markdown_table(array)
    parts = []
    for index in np.ndindex(*array.shape[:-2]):
        parts.append(f'**[{", ".join(str(i) for i in index)}]**\n\n{_markdown_table(array[index])}')
    return '\n\n'.join(parts)


def _text_tensor(value, metadata) -> Tuple[str, str]:
    array = _ndarray(value.tensor)
    if array.dtype.kind not in 'SUO':
        raise UnsupportedValue('text', f'text tensor of dtype {array.dtype}')
    return TEXT, render_text(array)


# ----------------------------------------------------------------------------------------------- audio

def _wav_rate(data: bytes) -> Optional[int]:
    try:
        with wave.open(io.BytesIO(data)) as reader:
            return int(reader.getframerate())
    except (wave.Error, EOFError):
        return None


def _audio_format(data: bytes, content_type: str = '') -> str:
    known = _AUDIO_CONTENT_TYPES.get(content_type.lower())
    if known:
        return known
    if data[:4] == b'RIFF' and data[8:12] == b'WAVE':
        return 'wav'
    if data[:4] == b'fLaC':
        return 'flac'
    if data[:3] == b'ID3' or data[:2] in (b'\xff\xfb', b'\xff\xf3', b'\xff\xf2'):
        return 'mp3'
    raise UnsupportedValue('audio', f'audio encoding not wav, mp3 or flac (content type {content_type!r})')


def _audio_value(value, metadata) -> Tuple[str, List[Dict[str, Any]]]:
    """TF1 / PyTorch ``Summary.Audio``: one clip per value, with its sample rate."""
    audio = value.audio
    data = bytes(audio.encoded_audio_string)
    fmt = _audio_format(data, audio.content_type)
    rate = int(audio.sample_rate) if audio.sample_rate else (_wav_rate(data) if fmt == 'wav' else None)
    return AUDIO, [{'data': data, 'format': fmt, 'caption': '', 'rate': rate}]


def _audio_tensor(value, metadata) -> Tuple[str, List[Dict[str, Any]]]:
    """TF2 ``audio`` plugin: a k×2 string tensor of (encoded clip, label); the rate is in the WAV header."""
    array = _ndarray(value.tensor)
    if array.ndim == 1 and array.size == 0:
        raise UnsupportedValue('audio', 'audio tensor holds no clip')
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise UnsupportedValue('audio', f'audio tensor of shape {array.shape}')
    clips = []
    for data, label in array:
        data = bytes(data)
        fmt = _audio_format(data)
        clips.append({'data': data, 'format': fmt, 'caption': bytes(label).decode('utf-8', errors='replace'),
                      'rate': _wav_rate(data) if fmt == 'wav' else None})
    return AUDIO, clips


# --------------------------------------------------------------------------------------------- hparams

def _hparam_value(value) -> Any:
    """A ``google.protobuf.Value`` → a plain Python value (numbers stay floats, as they were written)."""
    field = value.WhichOneof('kind')
    if field is None or field == 'null_value':
        return None
    if field in ('list_value', 'struct_value'):
        return json_format.MessageToDict(value)
    return getattr(value, field)


def _hparams_tensor(value, metadata) -> Tuple[str, Dict[str, Any]]:
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData.FromString(metadata.plugin_data.content)
    which = data.WhichOneof('data')
    if which == 'session_start_info':
        return HPARAMS, {name: _hparam_value(v) for name, v in sorted(data.session_start_info.hparams.items())}
    if which == 'experiment':
        return HPARAMS_CONFIG, json_format.MessageToDict(data.experiment, preserving_proto_field_name=True)
    raise UnsupportedValue('hparams', f'hparams {which or "(empty)"} is not converted')


def _metadata_only(value, metadata) -> Tuple[str, Any]:
    """A value with no data field, only plugin metadata: tensorboardX writes its hparams this way (TF
    writes an empty tensor). Dispatched by plugin name like a tensor."""
    plugin = metadata.plugin_data.plugin_name if metadata is not None else ''
    if plugin == 'hparams':
        return _hparams_tensor(value, metadata)
    raise UnsupportedValue(plugin or 'empty value (no data, no plugin metadata)')


# summary.value oneof field (None: no field set) -> decoder; transforms.events adds the scalars' own
VALUE_DECODERS: Dict[Optional[str], Callable[[Any, Any], Tuple[str, Any]]] = {
    'image': _image_value, 'histo': _histo_value, 'audio': _audio_value, None: _metadata_only}
# plugin name of a tensor summary -> decoder
PLUGIN_DECODERS: Dict[str, Callable[[Any, Any], Tuple[str, Any]]] = {
    'images': _images_tensor,
    'histograms': _histograms_tensor,
    'text': _text_tensor,
    'audio': _audio_tensor,
    'hparams': _hparams_tensor,
}
