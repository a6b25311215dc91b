"""TensorBoard logdirs written by real writers, returning exactly what they wrote.

* ``write_tbx``: tensorboardX's ``SummaryWriter`` (as PyTorch users log): scalars as ``simple_value``.
* ``write_tf2``: events as TF2's ``tf.summary.scalar`` writes them (a float32 tensor, the ``scalars``
  plugin metadata on each tag's first event only), through the ``EventFileWriter`` and protos that the
  ``tensorboard`` package ships, so no TensorFlow is needed.

Each returns ``{(tag, step): (float32 value, wall_time)}`` for the file it wrote.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

Points = Dict[Tuple[str, int], Tuple[float, float]]

__all__ = ['write_tbx', 'write_tf2', 'write_seed_logdir', 'value_at', 'SEED_RUNS']


def value_at(tag: str, step: int, salt: int = 0) -> float:
    """A deterministic, float32-representable value that differs by tag, step and run."""
    return float(np.float32(np.sin(step * 0.01 + len(tag) + salt) * (1 + step) / 7.0))


def write_tbx(directory: str, tags: Iterable[str], steps: int, start_time: float = 1_700_000_000.0,
              salt: int = 0, step_seconds: float = 0.5) -> Points:
    from tensorboardX import SummaryWriter

    os.makedirs(directory, exist_ok=True)
    written: Points = {}
    writer = SummaryWriter(directory, flush_secs=3600)
    for step in range(steps):
        wall_time = start_time + step * step_seconds
        for tag in tags:
            value = value_at(tag, step, salt)
            writer.add_scalar(tag, value, step, walltime=wall_time)
            written[(tag, step)] = (value, wall_time)
    writer.close()
    return written


def write_tf2(directory: str, tags: Iterable[str], steps: int, start_time: float = 1_700_000_000.0,
              salt: int = 0, step_seconds: float = 0.5) -> Points:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    os.makedirs(directory, exist_ok=True)
    writer = EventFileWriter(directory, flush_secs=3600)
    written: Points = {}
    described = set()
    for step in range(steps):
        wall_time = start_time + step * step_seconds
        for tag in tags:
            value = value_at(tag, step, salt)
            summary_value = summary_pb2.Summary.Value(
                tag=tag, tensor=tensor_util.make_tensor_proto(np.float32(value)))
            if tag not in described:  # tf.summary writes the metadata once per tag and file
                summary_value.metadata.CopyFrom(scalar_metadata.create_summary_metadata('', ''))
                described.add(tag)
            writer.add_event(event_pb2.Event(wall_time=wall_time, step=step,
                                             summary=summary_pb2.Summary(value=[summary_value])))
            written[(tag, step)] = (value, wall_time)
    writer.close()
    return written


# The hierarchy of Aim's converter guide: run -> context -> tags written there.
SEED_RUNS = {
    'run_1': {None: ('loss', 'accuracy')},
    'group_1/run_2': {None: ('lr',), 'train': ('loss', 'accuracy'), 'validate': ('loss', 'accuracy')},
    'group_1/run_3': {None: ('loss',)},
}
SEED_IGNORED_DIRS = ('', 'group_1')


def write_seed_logdir(root: str, steps: int = 50, writer: str = 'tbx') -> Dict[Tuple[str, Optional[str]], Points]:
    """The converter guide's hierarchy, with unorganized files in the root and in group_1.

    Returns ``{(run, context): points}`` for the files that must be converted."""
    write = write_tbx if writer == 'tbx' else write_tf2
    expected = {}
    for salt, (run, contexts) in enumerate(sorted(SEED_RUNS.items())):
        for context, tags in contexts.items():
            directory = os.path.join(root, run, context) if context else os.path.join(root, run)
            expected[(run, context)] = write(directory, tags, steps, salt=salt,
                                             start_time=1_700_000_000.0 + 1000 * salt)
    for directory in SEED_IGNORED_DIRS:
        write(os.path.join(root, directory), ('ignored',), 3, salt=99)
    return expected
