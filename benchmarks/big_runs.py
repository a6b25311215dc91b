"""Logdirs of one huge run, for the benchmark's memory figures: a long run (millions of points in one
event file, as a long pretraining log) and a wide run (hundreds of thousands of tags of one point each).

Written as tensorboardX writes scalars (``simple_value`` events, TFRecord-framed), but with the
protobufs and framing directly: tensorboardX's writer takes minutes for ten million points. Cached under
``.bench/`` like the main logdir. Every value is a function of its tag and step (``value_at``).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Tuple

from tensorboard.compat.proto import event_pb2, summary_pb2

from connectors.tfrecord import frame

__all__ = ['ensure_long_run', 'ensure_wide_run', 'value_at', 'START']

START = 1_700_000_000.0
LONG_TAGS = ('loss', 'lr', 'grad_norm', 'tokens_per_s')
WIDE_TAGS_PER_EVENT = 200


def value_at(tag_index: int, step: int) -> float:
    """The value logged for the tag at ``step`` (exact in float32)."""
    return float((step * 7 + tag_index * 13) % 1000) / 8.0


def _write(path: str, events) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    count = 0
    with open(path, 'wb') as out:
        out.write(frame(event_pb2.Event(wall_time=START, file_version='brain.Event:2').SerializeToString()))
        buffer = []
        for event in events:
            buffer.append(frame(event.SerializeToString()))
            count += len(event.summary.value)
            if len(buffer) >= 10_000:
                out.write(b''.join(buffer))
                buffer.clear()
        out.write(b''.join(buffer))
    return count


def _ensure(cache: str, name: str, points: int, events) -> Tuple[str, int]:
    root = os.path.join(cache, name)
    marker = os.path.join(root, '.complete.json')
    if os.path.exists(marker):
        with open(marker) as f:
            return root, json.load(f)['points']
    shutil.rmtree(root, ignore_errors=True)
    written = _write(os.path.join(root, 'run', 'events.out.tfevents.1700000000.bench'), events)
    if written != points:
        raise RuntimeError(f'{name}: wrote {written} points, expected {points}')
    with open(marker, 'w') as f:
        json.dump({'points': written}, f)
    return root, written


def ensure_long_run(cache: str, points: int = 10_000_000) -> Tuple[str, int]:
    """One run, one context-less event file: ``len(LONG_TAGS)`` tags logged at every step."""
    steps = points // len(LONG_TAGS)

    def events():
        for step in range(steps):
            values = [summary_pb2.Summary.Value(tag=tag, simple_value=value_at(i, step))
                      for i, tag in enumerate(LONG_TAGS)]
            yield event_pb2.Event(step=step, wall_time=START + step * 0.25, summary=summary_pb2.Summary(value=values))

    return _ensure(cache, f'long-run-{points}', steps * len(LONG_TAGS), events())


def ensure_wide_run(cache: str, tags: int = 200_000) -> Tuple[str, int]:
    """One run of ``tags`` tags, one point each (step 0), ``WIDE_TAGS_PER_EVENT`` tags an event."""

    def events():
        for first in range(0, tags, WIDE_TAGS_PER_EVENT):
            values = [summary_pb2.Summary.Value(tag=f'layer{i // 100}/unit{i % 100}', simple_value=value_at(i, 0))
                      for i in range(first, min(tags, first + WIDE_TAGS_PER_EVENT))]
            yield event_pb2.Event(step=0, wall_time=START + first / 1000, summary=summary_pb2.Summary(value=values))

    return _ensure(cache, f'wide-run-{tags}', tags, events())
