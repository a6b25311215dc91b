"""The logdirs of the bench against ``aim convert tensorboard``: written once by real writers, cached
under ``.bench/`` and reused.

The layout ``aim convert`` understands (run directories holding context directories): every run
``run_NNNN`` has the contexts ``train`` and ``validate``, each one event file written by one writer, as
a training script writes it:

* even runs: tensorboardX's ``SummaryWriter`` (as PyTorch users log): scalars by ``add_scalar``
  (``simple_value``) and, every ``HISTOGRAM_EVERY`` steps, one ``add_histogram`` of
  ``HISTOGRAM_VALUES`` values (tensorboardX's default exponential buckets);
* odd runs: scalars as TF2's ``tf.summary.scalar`` writes them (``samples.tensorboard_logs.write_tf2``,
  a float32 tensor with the ``scalars`` plugin), and the histograms by tensorboardX in a second file.

Two shapes, chosen by the run count: fewer than ``MANY_RUNS`` runs are long (``LONG``: 4 tags x 250
steps, 2,000 scalar points a run), more are short (``SHORT``: 2 tags x 100 steps, 400 a run, where the
cost of each run dominates). So the 200-run logdir holds 400,000 scalar points and the 2,000-run one
800,000. Histograms are in both because users log them and ``aim convert`` does not convert them (it
reads only the ``scalars`` and ``images`` plugins): the bench says how many it dropped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from multiprocessing import Pool
from typing import Dict, List, Tuple

import numpy as np

from samples.tensorboard_logs import value_at, write_tf2

__all__ = ['Shape', 'LONG', 'SHORT', 'MANY_RUNS', 'CONTEXTS', 'HISTOGRAM_TAG', 'HISTOGRAM_EVERY', 'shape_for',
           'run_name', 'run_names', 'expected_points', 'ensure_convert_logdir', 'write_convert_logdir']

VERSION = 1
CONTEXTS = ('train', 'validate')
HISTOGRAM_TAG = 'weights/dense'
HISTOGRAM_EVERY = 50
HISTOGRAM_VALUES = 1_000
START = 1_700_000_000.0
STEP_SECONDS = 0.5
MANY_RUNS = 1_000


@dataclasses.dataclass(frozen=True)
class Shape:
    """What each context of each run holds: ``tags`` scalar tags of ``steps`` steps."""
    name: str
    tags: Tuple[str, ...]
    steps: int

    @property
    def histogram_steps(self) -> Tuple[int, ...]:
        return tuple(range(0, self.steps, HISTOGRAM_EVERY))


LONG = Shape('long', ('loss', 'accuracy', 'lr', 'grad_norm'), 250)
SHORT = Shape('short', ('loss', 'accuracy'), 100)


def shape_for(runs: int) -> Shape:
    """The shape of a logdir of ``runs`` runs (see the module's docstring)."""
    return SHORT if runs >= MANY_RUNS else LONG


def run_name(index: int) -> str:
    return f'run_{index:04d}'


def run_names(runs: int) -> List[str]:
    return [run_name(i) for i in range(runs)]


def expected_points(runs: int, shape: Shape) -> Dict[str, int]:
    """{kind: points} the writers write: ``metric`` (scalars) and ``distribution`` (histograms)."""
    per_context = {'metric': len(shape.tags) * shape.steps, 'distribution': len(shape.histogram_steps)}
    return {kind: runs * len(CONTEXTS) * count for kind, count in per_context.items()}


def _histogram_values(salt: int, step: int) -> np.ndarray:
    return np.random.default_rng([salt, step]).normal(step / 100.0, 1.0, size=HISTOGRAM_VALUES)


def _write_histograms(directory: str, shape: Shape, salt: int, start_time: float, suffix: str) -> int:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(directory, flush_secs=3600, filename_suffix=suffix)
    for step in shape.histogram_steps:
        writer.add_histogram(HISTOGRAM_TAG, _histogram_values(salt, step), step,
                             walltime=start_time + step * STEP_SECONDS)
    writer.close()
    return len(shape.histogram_steps)


def _write_tbx_context(directory: str, shape: Shape, salt: int, start_time: float) -> Dict[str, int]:
    """One tensorboardX writer, one file: scalars every step, a histogram every ``HISTOGRAM_EVERY``."""
    from tensorboardX import SummaryWriter

    os.makedirs(directory, exist_ok=True)
    writer = SummaryWriter(directory, flush_secs=3600)
    histograms = 0
    for step in range(shape.steps):
        wall_time = start_time + step * STEP_SECONDS
        for tag in shape.tags:
            writer.add_scalar(tag, value_at(tag, step, salt), step, walltime=wall_time)
        if step % HISTOGRAM_EVERY == 0:
            writer.add_histogram(HISTOGRAM_TAG, _histogram_values(salt, step), step, walltime=wall_time)
            histograms += 1
    writer.close()
    return {'metric': len(shape.tags) * shape.steps, 'distribution': histograms}


def _write_run(args: Tuple[str, int, Shape]) -> Dict[str, int]:
    root, index, shape = args
    written = {'metric': 0, 'distribution': 0}
    start_time = START + 86_400 * index
    for position, context in enumerate(CONTEXTS):
        directory = os.path.join(root, run_name(index), context)
        salt = index * len(CONTEXTS) + position
        if index % 2 == 0:
            counts = _write_tbx_context(directory, shape, salt, start_time)
        else:  # TF2's scalars, and the histograms by a second writer (its own file name)
            points = write_tf2(directory, shape.tags, shape.steps, start_time=start_time, salt=salt,
                               step_seconds=STEP_SECONDS)
            counts = {'metric': len(points),
                      'distribution': _write_histograms(directory, shape, salt, start_time, '.histograms')}
        for kind, count in counts.items():
            written[kind] += count
    return written


def write_convert_logdir(root: str, runs: int, shape: Shape, processes: int = 1) -> Dict[str, int]:
    """Write ``runs`` runs of ``shape`` under ``root``; returns {kind: points written}."""
    jobs = [(root, i, shape) for i in range(runs)]
    if processes > 1 and runs > 1:
        with Pool(processes) as pool:
            counts = pool.map(_write_run, jobs, chunksize=8)
    else:
        counts = [_write_run(job) for job in jobs]
    return {kind: sum(c[kind] for c in counts) for kind in ('metric', 'distribution')}


def ensure_convert_logdir(cache: str, runs: int) -> Tuple[str, Shape, Dict[str, int]]:
    """``cache/convert-logdir-<runs>-v<VERSION>``, written in parallel unless already complete; returns
    (path, shape, {kind: points})."""
    shape = shape_for(runs)
    root = os.path.join(cache, f'convert-logdir-{runs}-v{VERSION}')
    marker = root + '.complete.json'  # beside the logdir: inside, both converters would see a stray file
    if os.path.exists(marker):
        with open(marker) as f:
            return root, shape, json.load(f)['by_kind']
    shutil.rmtree(root, ignore_errors=True)
    by_kind = write_convert_logdir(root, runs, shape, processes=os.cpu_count() or 1)
    if by_kind != expected_points(runs, shape):
        raise RuntimeError(f'the writers wrote {by_kind}, expected {expected_points(runs, shape)}')
    with open(marker, 'w') as f:
        json.dump({'runs': runs, 'shape': shape.name, 'by_kind': by_kind}, f)
    return root, shape, by_kind

