"""W&B's values → runferry's payloads: pure functions over what a ``.wandb`` record holds.

W&B stores every history, summary and config value as JSON text (``value_json``) under a key or a
``nested_key`` path. ``unflatten`` makes the nested dict; ``history_values`` flattens a history row back
into names joined with ``/``, a W&B media object (a dict holding ``_type``) being one leaf; and
``convert_value`` turns a leaf into a point's (kind, payload), as ``connectors.aim_objects`` takes it:
numbers → metrics, strings → text, ``image-file``/``images/separated`` → images (the files' bytes),
``histogram`` → a distribution, ``table-file`` → text (CSV), ``audio-file`` → audio. What it does not
convert raises ``Unconverted`` naming the value's type.
"""
from __future__ import annotations

import csv
import io
import json
import posixpath
import wave
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from runmodel import METRIC

__all__ = ['IMAGE', 'DISTRIBUTION', 'TEXT', 'AUDIO', 'Unconverted', 'item_path', 'json_value', 'set_path',
           'remove_path', 'merge_dict', 'unflatten', 'history_values', 'convert_value']

IMAGE, DISTRIBUTION, TEXT, AUDIO = 'image', 'distribution', 'text', 'audio'


def item_path(item) -> Tuple[str, ...]:
    nested = item.nested_key
    if len(nested) == 1:  # the common case, and the cheapest to read from the proto
        return (nested[0],)
    return tuple(nested) if nested else (item.key,)


def json_value(text: str) -> Any:
    """A ``value_json``: numbers (most values) through ``float``, the rest through ``json``."""
    if not text:
        return None
    try:
        number = float(text)  # JSON numbers, NaN and ±Infinity; never a string, list or object
    except ValueError:
        return json.loads(text)
    if text.isdigit() or (text[0] == '-' and text[1:].isdigit()):
        return int(text)
    return number


def set_path(out: Dict[str, Any], path: Tuple[str, ...], value: Any) -> None:
    target = out
    for part in path[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[path[-1]] = value


def unflatten(items) -> Dict[str, Any]:
    """W&B's history/summary/config items (``key`` or ``nested_key`` path, ``value_json``) → a nested dict."""
    out: Dict[str, Any] = {}
    for item in items:
        set_path(out, item_path(item), json_value(item.value_json))
    return out


def history_values(row: Dict[str, Any], prefix: str = '') -> Iterator[Tuple[str, Any]]:
    """A history row (nested dict) → (name, value) leaves, names joined with ``/``; a dict holding a
    ``_type`` (a W&B media object) is one leaf."""
    for key, value in row.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict) and '_type' not in value and value:
            yield from history_values(value, name + '/')
        else:
            yield name, value


class Unconverted(Exception):
    """A history value runferry does not convert; the message names its type."""


def _media_format(path: str, given: Optional[str] = None) -> str:
    return (given or posixpath.splitext(path)[1].lstrip('.')).lower()


def _wav_rate(data: bytes) -> Optional[int]:
    try:
        with wave.open(io.BytesIO(data)) as reader:
            return int(reader.getframerate())
    except (wave.Error, EOFError):
        return None


def _table_csv(table: Dict[str, Any]) -> str:
    """A W&B table file (``{"columns": [...], "data": [[...], ...]}``) as CSV; cells that are not plain
    values (media in a table) as their JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(table.get('columns', []))
    for row in table.get('data', []):
        writer.writerow([cell if isinstance(cell, (str, int, float)) or cell is None else json.dumps(cell)
                         for cell in row])
    return out.getvalue()


def _packed_edges(packed: Dict[str, Any]) -> List[float]:
    low, size, count = float(packed['min']), float(packed['size']), int(packed['count'])
    return [low + size * i for i in range(count + 1)]


def convert_value(value: Any, read_media: Callable[[str], bytes]) -> Tuple[str, Any]:
    """One history value → (kind, payload) as ``connectors.aim_objects`` takes it; ``read_media(path)``
    returns the bytes of a file under the run's ``files/``. Raises ``Unconverted``."""
    if value.__class__ is float or value.__class__ is int:
        return METRIC, float(value)
    if isinstance(value, bool) or value is None:
        raise Unconverted(f'{type(value).__name__} value')
    if isinstance(value, str):
        return TEXT, value
    if not isinstance(value, dict):
        raise Unconverted(f'{type(value).__name__} value')
    media_type = value.get('_type')
    if media_type == 'image-file':
        return IMAGE, [{'data': read_media(value['path']), 'format': _media_format(value['path'], value.get('format')),
                        'caption': value.get('caption') or ''}]
    if media_type == 'images/separated':
        captions = value.get('captions') or []
        return IMAGE, [{'data': read_media(path), 'format': _media_format(path, value.get('format')),
                        'caption': (captions[i] if i < len(captions) and captions[i] else '')}
                       for i, path in enumerate(value['filenames'])]
    if media_type == 'histogram':
        counts = [float(c) for c in value['values']]
        edges = _packed_edges(value['packedBins']) if 'packedBins' in value else [float(b) for b in value['bins']]
        if not counts or len(edges) != len(counts) + 1:
            raise Unconverted(f'histogram of {len(counts)} counts and {len(edges)} bins')
        return DISTRIBUTION, {'edges': edges, 'counts': counts}
    if media_type == 'table-file':
        return TEXT, _table_csv(json.loads(read_media(value['path'])))
    if media_type == 'audio-file':
        data = read_media(value['path'])
        fmt = _media_format(value['path'])
        rate = value.get('sample_rate') or (_wav_rate(data) if fmt == 'wav' else None)
        return AUDIO, [{'data': data, 'format': fmt, 'caption': value.get('caption') or '', 'rate': rate}]
    raise Unconverted(f'W&B type {media_type!r}' if media_type else 'empty dict')


def merge_dict(target: Dict[str, Any], update: Dict[str, Any]) -> None:
    """A summary update: a nested key replaces only its leaf (W&B sends ``nested_key`` paths)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and '_type' not in value:
            merge_dict(target[key], value)
        else:
            target[key] = value


def remove_path(target: Dict[str, Any], path: Tuple[str, ...]) -> None:
    for part in path[:-1]:
        target = target.get(part)
        if not isinstance(target, dict):
            return
    target.pop(path[-1], None)
