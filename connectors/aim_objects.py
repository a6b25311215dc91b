"""Plain payloads (``transforms.plugins``) → Aim objects: ``OBJECT_CONVERTERS`` maps a kind to its converter.

Images and audio keep the source's encoded bytes as they are (no decode/re-encode round trip, so a
JPEG loses nothing and a PNG keeps its exact bytes); Pillow only reads the image header for mode and
size, which Aim's UI shows.

Distributions: ``aim.Distribution`` stores counts (``hist``) over one ``(start, end)`` range, i.e.
uniform buckets, and that is all Aim's UI reads. TensorBoard's buckets need not be uniform: PyTorch's
and tensorboardX's ``add_histogram`` and TF1 write exponential buckets (hundreds of edges, narrow near
zero, wide far out). Drawn as Aim's uniform buckets over (first edge, last edge), those counts would
be pushed to the edges. So the converter stores:

* ``hist``/``range`` (what Aim's UI draws): buckets that are already uniform (Keras, TF2's
  ``tf.summary.histogram``, ``np.histogram`` with a bucket count) as they are; any other buckets
  re-binned (``uniform_buckets``) onto ``REBIN_BUCKETS`` uniform buckets over the data's real range,
  from the left edge of the first non-empty bucket to the right edge of the last one (for TF1 protos
  those are the histogram's ``min`` and ``max``, see ``transforms.plugins``), mass-preserving: each
  source bucket's count is split across the uniform buckets it overlaps, in proportion to the overlap
  (a count is taken as spread evenly over its bucket, as TensorBoard's own dashboard assumes when it
  re-binned to uniform buckets to draw: ``rebinHistogram``). Re-binned counts are fractional (float64);
* the exact source buckets beside them, in the object's storage: ``edges`` (k+1 float64 bytes) and
  ``counts`` (k float64 bytes). ``distribution_buckets(d)`` reads them back as ``(edges, counts)``
  (falling back to Aim's uniform ``ranges`` and ``weights`` for distributions written by others);
  ``distribution_edges(d)`` reads the edges alone.
"""
from __future__ import annotations

import io
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from aim import Audio, Distribution, Image, Text
from aim.ext.resource.log import LogLine
from aim.storage.inmemorytreeview import InMemoryTreeView
from aim.storage.types import BLOB

__all__ = ['OBJECT_CONVERTERS', 'to_image', 'to_distribution', 'to_text', 'to_audio', 'to_log_line',
           'distribution_edges',
           'distribution_buckets', 'uniform_buckets', 'REBIN_BUCKETS']

EDGES_KEY = 'edges'
COUNTS_KEY = 'counts'
# Non-uniform buckets are drawn on this many uniform ones. TensorBoard's dashboard re-bins to 30; 64
# (Aim's own default for ``Distribution(samples)``) is finer, and about as fine as the exponential
# buckets PyTorch/tensorboardX/TF1 write (each 10% wider than the one before) are where weights
# usually lie: over a range of [-4, 4] a uniform bucket is 0.125 wide, a source bucket near 1 is 0.1.
# Finer buckets would only draw each wide source bucket as a run of equal, invented steps; Aim
# accepts at most 512.
REBIN_BUCKETS = 64
# relative spread of bucket widths still taken as uniform (np.histogram's linspace edges vary by ulps)
_UNIFORM_TOLERANCE = 1e-9


def _one_image(sample: Dict[str, Any]) -> Image:
    data = bytes(sample['data'])
    if all(key in sample for key in ('mode', 'width', 'height')):  # read at decode (transforms.plugins)
        mode, width, height = sample['mode'], sample['width'], sample['height']
    else:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(data)) as pil_image:
            mode, (width, height) = pil_image.mode, pil_image.size
    # the fields Image._from_pil_image sets, in its order, with the original bytes
    return _stored(Image, {'data': BLOB(data=data), 'source': 'PIL.Image', 'mode': mode,
                           'format': sample['format'], 'width': width, 'height': height,
                           'caption': sample.get('caption', '')})


def to_image(payload: List[Dict[str, Any]]) -> Union[Image, List[Image]]:
    images = [_one_image(sample) for sample in payload]
    return images[0] if len(images) == 1 else images


def _is_uniform(edges: np.ndarray) -> bool:
    widths = np.diff(edges)
    return bool(np.all(np.abs(widths - widths[0]) <= _UNIFORM_TOLERANCE * abs(edges[-1] - edges[0])))


def _data_range(edges: np.ndarray, counts: np.ndarray) -> Tuple[float, float]:
    """From the left edge of the first non-empty bucket to the right edge of the last one."""
    non_empty = np.flatnonzero(counts)
    return float(edges[non_empty[0]]), float(edges[non_empty[-1] + 1])


def uniform_buckets(edges: np.ndarray, counts: np.ndarray, buckets: int = REBIN_BUCKETS
                    ) -> Tuple[np.ndarray, Tuple[float, float]]:
    """Counts over any increasing ``edges`` → (counts over ``buckets`` uniform buckets, their range).

    The range is the data's (``_data_range``); each source count is split across the uniform buckets
    its bucket overlaps, in proportion to the overlap: the cumulative count, linear within each source
    bucket, is read at the uniform edges. The total is kept exactly (both ends pinned). Data in one
    point (a zero-width range) is one bucket there."""
    low, high = _data_range(edges, counts)
    total = float(counts.sum())
    if high <= low:
        return np.array([total]), (low, high)
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    at_uniform_edges = np.interp(np.linspace(low, high, buckets + 1), edges, cumulative)
    at_uniform_edges[0], at_uniform_edges[-1] = 0.0, total  # empty buckets before low; a point mass at low
    return np.maximum(np.diff(at_uniform_edges), 0.0), (low, high)


def to_distribution(payload: Dict[str, List[float]]) -> Distribution:
    edges = np.asarray(payload['edges'], dtype=np.float64)
    counts = np.asarray(payload['counts'], dtype=np.float64)
    if len(edges) != len(counts) + 1:
        raise ValueError(f'{len(counts)} bucket counts need {len(counts) + 1} edges, got {len(edges)}')
    if _is_uniform(edges) or not counts.any():
        hist, (low, high) = counts, (float(edges[0]), float(edges[-1]))
    else:
        hist, (low, high) = uniform_buckets(edges, counts)
    # what Distribution(hist=hist, bin_range=(low, high)) stores (its uniform edges start and end exactly
    # there), and the exact source buckets
    return _stored(Distribution, {'data': BLOB(data=hist.tobytes()), 'dtype': str(hist.dtype),
                                  'range': [low, high], 'bin_count': len(hist),
                                  EDGES_KEY: BLOB(data=edges.tobytes()), COUNTS_KEY: BLOB(data=counts.tobytes())})


def _stored(cls, storage: Dict[str, Any]):
    """An Aim object of ``cls`` over ``storage`` as given, the way Aim makes one it reads back
    (``CustomObject._aim_decode``): setting fields one by one deep-copies each value."""
    return cls.__new__(cls, _storage=InMemoryTreeView(container=storage))


def _stored_array(distribution: Distribution, key: str) -> Optional[np.ndarray]:
    try:
        raw = distribution.storage[key]
    except KeyError:
        return None
    raw = raw.load() if hasattr(raw, 'load') else raw
    return np.frombuffer(bytes(raw), dtype=np.float64)


def distribution_buckets(distribution: Distribution) -> Tuple[np.ndarray, np.ndarray]:
    """The exact source buckets ``(edges, counts)`` of a distribution written by runferry; Aim's
    uniform ``ranges`` and ``weights`` for one written by others."""
    edges, counts = _stored_array(distribution, EDGES_KEY), _stored_array(distribution, COUNTS_KEY)
    if edges is None:
        return distribution.ranges, distribution.weights
    return edges, (counts if counts is not None else distribution.weights)  # before counts were kept


def distribution_edges(distribution: Distribution) -> np.ndarray:
    """The exact bucket edges of a distribution written by runferry (Aim's uniform ones otherwise)."""
    return distribution_buckets(distribution)[0]


def to_text(payload: str) -> Text:
    return Text(payload)


def to_audio(payload: List[Dict[str, Any]]) -> Union[Audio, List[Audio]]:
    clips = [Audio(bytes(clip['data']), format=clip['format'], caption=clip.get('caption', ''),
                   rate=clip.get('rate')) for clip in payload]
    return clips[0] if len(clips) == 1 else clips


def to_log_line(payload: Dict[str, str]) -> LogLine:
    """A terminal line (``runmodel.LOG_LINE``) as Aim's own capture tracks it, an ``aim.log_line`` (Aim's
    UI reads its ``data``), with the streams it was written to beside it in its storage (``stream``)."""
    line = LogLine(payload['text'])
    line.storage['stream'] = payload['stream']
    return line


# kind -> function(payload) -> Aim object (aim.Image, aim.Distribution, ...)
OBJECT_CONVERTERS = {'image': to_image, 'distribution': to_distribution, 'text': to_text, 'audio': to_audio,
                     'log_line': to_log_line}
