"""Plain payloads (``transforms.plugins``) → Aim objects: ``OBJECT_CONVERTERS`` maps a kind to its converter.

Images and audio keep the source's encoded bytes as they are (no decode/re-encode round trip, so a
JPEG loses nothing and a PNG keeps its exact bytes); Pillow only reads the image header for mode and
size, which Aim's UI shows.

Distributions: ``aim.Distribution`` stores counts (``hist``) and one ``(start, end)`` range, i.e.
uniform buckets; TensorBoard's buckets need not be uniform (TF1 histograms are exponential). The
converter stores the counts as Aim's ``hist`` over ``range = (first edge, last edge)`` — what Aim's UI
draws, exact when the buckets are uniform — and the exact k+1 edges beside them in the object's
storage under ``edges`` (float64 bytes). ``distribution_edges(d)`` reads them back (falling back to
Aim's uniform ``ranges`` for distributions written by others); ``d.weights`` are the counts.
"""
from __future__ import annotations

import io
from typing import Any, Dict, List, Union

import numpy as np
from aim import Audio, Distribution, Image, Text
from aim.storage.inmemorytreeview import InMemoryTreeView
from aim.storage.types import BLOB

__all__ = ['OBJECT_CONVERTERS', 'to_image', 'to_distribution', 'to_text', 'to_audio', 'distribution_edges']

EDGES_KEY = 'edges'


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


def to_distribution(payload: Dict[str, List[float]]) -> Distribution:
    edges = np.asarray(payload['edges'], dtype=np.float64)
    counts = np.asarray(payload['counts'], dtype=np.float64)
    if len(edges) != len(counts) + 1:
        raise ValueError(f'{len(counts)} bucket counts need {len(counts) + 1} edges, got {len(edges)}')
    # what Distribution(hist=counts, bin_range=(edges[0], edges[-1])) stores (its uniform edges start and
    # end exactly there), and the exact edges
    return _stored(Distribution, {'data': BLOB(data=counts.tobytes()), 'dtype': str(counts.dtype),
                                  'range': [float(edges[0]), float(edges[-1])], 'bin_count': len(counts),
                                  EDGES_KEY: BLOB(data=edges.tobytes())})


def _stored(cls, storage: Dict[str, Any]):
    """An Aim object of ``cls`` over ``storage`` as given, the way Aim makes one it reads back
    (``CustomObject._aim_decode``): setting fields one by one deep-copies each value."""
    return cls.__new__(cls, _storage=InMemoryTreeView(container=storage))


def distribution_edges(distribution: Distribution) -> np.ndarray:
    """The exact bucket edges of a distribution written by runferry (Aim's uniform ones otherwise)."""
    try:
        raw = distribution.storage[EDGES_KEY]
    except KeyError:
        return distribution.ranges
    raw = raw.load() if hasattr(raw, 'load') else raw
    return np.frombuffer(bytes(raw), dtype=np.float64)


def to_text(payload: str) -> Text:
    return Text(payload)


def to_audio(payload: List[Dict[str, Any]]) -> Union[Audio, List[Audio]]:
    clips = [Audio(bytes(clip['data']), format=clip['format'], caption=clip.get('caption', ''),
                   rate=clip.get('rate')) for clip in payload]
    return clips[0] if len(clips) == 1 else clips


# kind -> function(payload) -> Aim object (aim.Image, aim.Distribution, ...)
OBJECT_CONVERTERS = {'image': to_image, 'distribution': to_distribution, 'text': to_text, 'audio': to_audio}
