"""The benchmark's logdir: written once by real writers, cached under ``.bench/`` and reused.

Every run ``run_NNN`` has two contexts, ``train`` and ``validate``; each context directory holds

* one event file of scalars: ``TAGS`` x ``STEPS`` points, written by tensorboardX (even runs, as PyTorch
  users log: ``simple_value``) or as TF2's ``tf.summary.scalar`` writes them (odd runs);
* one event file of images and histograms, written by tensorboardX's ``SummaryWriter`` (a second writer,
  as a training script that logs media apart does): every ``OBJECT_EVERY`` steps one 16x16 RGB image
  (``add_image``, HWC uint8, PNG-encoded by tensorboardX) and one histogram of ``HISTOGRAM_VALUES``
  values in ``HISTOGRAM_BINS`` bins (``add_histogram``).

For 200 runs: 800,000 scalar points, 8,000 image points and 8,000 distribution points. Every value is
a function of (run, context, step), so the converted repo can be checked against the functions below
(``value_at`` in ``samples.tensorboard_logs`` for scalars, ``image_at`` and ``histogram_at`` here).
"""
from __future__ import annotations

import json
import os
import shutil
from multiprocessing import Pool
from typing import Dict, List, Tuple

import numpy as np

from samples.tensorboard_logs import write_tbx, write_tf2
from samples.tensorboard_plugins import sample_image

__all__ = ['CONTEXTS', 'TAGS', 'STEPS', 'START', 'STEP_SECONDS', 'KINDS', 'OBJECT_EVERY', 'OBJECT_STEPS',
           'IMAGE_TAG', 'IMAGE_SIZE', 'HISTOGRAM_TAG', 'HISTOGRAM_BINS', 'HISTOGRAM_VALUES', 'run_names',
           'run_salt', 'wall_time_at', 'image_at', 'histogram_at', 'points_by_kind', 'ensure_logdir',
           'subset_logdir', 'expected_points']

VERSION = 2
CONTEXTS = ('train', 'validate')
TAGS = ('loss', 'accuracy', 'lr', 'grad_norm')
STEPS = 500  # 200 runs x 2 contexts x 4 tags x 500 steps = 800,000 scalar points
START = 1_700_000_000.0
STEP_SECONDS = 0.5
# Aim's kinds as runferry names them (``runmodel.METRIC``, ``transforms.plugins``)
KINDS = ('metric', 'image', 'distribution')
OBJECT_EVERY = 25
OBJECT_STEPS = tuple(range(0, STEPS, OBJECT_EVERY))  # 20 steps: 200 runs x 2 contexts x 20 = 8,000 a kind
IMAGE_TAG = 'samples/input'
IMAGE_SIZE = (16, 16)  # height, width; RGB
HISTOGRAM_TAG = 'weights/dense'
HISTOGRAM_BINS = 30
HISTOGRAM_VALUES = 1_000


def run_names(runs: int) -> List[str]:
    return [f'run_{i:03d}' for i in range(runs)]


def run_salt(index: int, context: str) -> int:
    return index * 2 + CONTEXTS.index(context)


def wall_time_at(index: int, step: int) -> float:
    """The wall time every writer stamps on run ``index``'s points at ``step``."""
    return START + 86_400 * index + step * STEP_SECONDS


def image_at(index: int, context: str, step: int) -> np.ndarray:
    """The HWC uint8 pixels of the image written at (run, context, step)."""
    height, width = IMAGE_SIZE
    return sample_image(step, height, width, 3, salt=run_salt(index, context))


def _histogram_values(index: int, context: str, step: int) -> np.ndarray:
    rng = np.random.default_rng([run_salt(index, context), step])
    return rng.normal(step / STEPS, 1.0, size=HISTOGRAM_VALUES)


def histogram_at(index: int, context: str, step: int) -> Tuple[List[float], List[float]]:
    """(edges, counts) of the histogram written at (run, context, step): ``np.histogram``'s buckets,
    which tensorboardX writes (its ``make_histogram``) and runferry reads back (``min`` + limits + ``max``)."""
    counts, edges = np.histogram(_histogram_values(index, context, step), bins=HISTOGRAM_BINS)
    return edges.tolist(), counts.astype(float).tolist()


def _write_objects(directory: str, index: int, context: str) -> Dict[str, int]:
    from tensorboardX import SummaryWriter

    # a suffix: tensorboardX names files by the second and host, so a second writer needs its own name
    writer = SummaryWriter(directory, flush_secs=3600, filename_suffix='.objects')
    for step in OBJECT_STEPS:
        wall_time = wall_time_at(index, step)
        writer.add_image(IMAGE_TAG, image_at(index, context, step), step, walltime=wall_time, dataformats='HWC')
        writer.add_histogram(HISTOGRAM_TAG, _histogram_values(index, context, step), step, bins=HISTOGRAM_BINS,
                             walltime=wall_time)
    writer.close()
    return {'image': len(OBJECT_STEPS), 'distribution': len(OBJECT_STEPS)}


def _write_run(args: Tuple[str, int]) -> Dict[str, int]:
    root, index = args
    written = dict.fromkeys(KINDS, 0)
    for context in CONTEXTS:
        directory = os.path.join(root, f'run_{index:03d}', context)
        # even runs as PyTorch users log (tensorboardX simple_value), odd runs as TF2 tf.summary does
        write = write_tbx if index % 2 == 0 else write_tf2
        points = write(directory, TAGS, STEPS, start_time=wall_time_at(index, 0), salt=run_salt(index, context),
                       step_seconds=STEP_SECONDS)
        written['metric'] += len(points)
        for kind, count in _write_objects(directory, index, context).items():
            written[kind] += count
    return written


def points_by_kind(runs: int) -> Dict[str, int]:
    """{kind: points} the writers write for ``runs`` runs."""
    per_context = {'metric': len(TAGS) * STEPS, 'image': len(OBJECT_STEPS), 'distribution': len(OBJECT_STEPS)}
    return {kind: runs * len(CONTEXTS) * per_context[kind] for kind in KINDS}


def _read_marker(marker: str) -> Dict[str, int]:
    with open(marker) as f:
        return json.load(f)['by_kind']


def ensure_logdir(cache: str, runs: int) -> Tuple[str, Dict[str, int]]:
    """``cache/logdir-<runs>-v<VERSION>``, written in parallel unless already complete; returns
    (path, {kind: points})."""
    root = os.path.join(cache, f'logdir-{runs}-v{VERSION}')
    marker = os.path.join(root, '.complete.json')
    if os.path.exists(marker):
        return root, _read_marker(marker)
    shutil.rmtree(root, ignore_errors=True)
    with Pool(os.cpu_count() or 1) as pool:
        counts = pool.map(_write_run, [(root, i) for i in range(runs)], chunksize=4)
    by_kind = {kind: sum(c[kind] for c in counts) for kind in KINDS}
    if by_kind != points_by_kind(runs):
        raise RuntimeError(f'the writers wrote {by_kind}, expected {points_by_kind(runs)}')
    with open(marker, 'w') as f:
        json.dump({'points': sum(by_kind.values()), 'by_kind': by_kind, 'runs': runs}, f)
    return root, by_kind


def subset_logdir(cache: str, full: str, runs: int) -> Tuple[str, Dict[str, int]]:
    """The first ``runs`` runs of ``full`` copied to their own logdir (same bytes)."""
    root = os.path.join(cache, f'logdir-{runs}-of-{os.path.basename(full)}')
    marker = os.path.join(root, '.complete.json')
    if not os.path.exists(marker):
        shutil.rmtree(root, ignore_errors=True)
        for name in run_names(runs):
            shutil.copytree(os.path.join(full, name), os.path.join(root, name))
        by_kind = points_by_kind(runs)
        with open(marker, 'w') as f:
            json.dump({'points': sum(by_kind.values()), 'by_kind': by_kind, 'runs': runs}, f)
    return root, _read_marker(marker)


def expected_points(runs: int) -> Dict[Tuple[str, str, str, str], int]:
    """{(run, context, kind, tag): point count} the writers produced."""
    out = {}
    for name in run_names(runs):
        for context in CONTEXTS:
            out.update({(name, context, 'metric', tag): STEPS for tag in TAGS})
            out[(name, context, 'image', IMAGE_TAG)] = len(OBJECT_STEPS)
            out[(name, context, 'distribution', HISTOGRAM_TAG)] = len(OBJECT_STEPS)
    return out
