"""The benchmark's logdir: written once by real writers, cached under ``.bench/`` and reused."""
from __future__ import annotations

import json
import os
import shutil
from multiprocessing import Pool
from typing import Dict, List, Tuple

from samples.tensorboard_logs import write_tbx, write_tf2

__all__ = ['CONTEXTS', 'TAGS', 'STEPS', 'run_names', 'run_salt', 'ensure_logdir', 'subset_logdir',
           'expected_points', 'extras_available']

VERSION = 1
CONTEXTS = ('train', 'validate')
TAGS = ('loss', 'accuracy', 'lr', 'grad_norm')
STEPS = 500  # 200 runs x 2 contexts x 4 tags x 500 steps = 800,000 scalar points
START = 1_700_000_000.0


def run_names(runs: int) -> List[str]:
    return [f'run_{i:03d}' for i in range(runs)]


def run_salt(index: int, context: str) -> int:
    return index * 2 + CONTEXTS.index(context)


def _write_run(args: Tuple[str, int]) -> int:
    root, index = args
    written = 0
    for context in CONTEXTS:
        # even runs as PyTorch users log (tensorboardX simple_value), odd runs as TF2 tf.summary does
        write = write_tbx if index % 2 == 0 else write_tf2
        points = write(os.path.join(root, f'run_{index:03d}', context), TAGS, STEPS,
                       start_time=START + 86_400 * index, salt=run_salt(index, context))
        written += len(points)
    return written


def extras_available() -> bool:
    """Whether ``samples.tensorboard_plugins`` (images/histograms writers) exists in this checkout."""
    import importlib.util
    return importlib.util.find_spec('samples.tensorboard_plugins') is not None


def ensure_logdir(cache: str, runs: int) -> Tuple[str, int]:
    """``cache/logdir-<runs>``, written in parallel unless already complete; returns (path, points)."""
    root = os.path.join(cache, f'logdir-{runs}-v{VERSION}')
    marker = os.path.join(root, '.complete.json')
    if os.path.exists(marker):
        with open(marker) as f:
            return root, json.load(f)['points']
    shutil.rmtree(root, ignore_errors=True)
    with Pool(os.cpu_count() or 1) as pool:
        points = sum(pool.map(_write_run, [(root, i) for i in range(runs)], chunksize=4))
    with open(marker, 'w') as f:
        json.dump({'points': points, 'runs': runs}, f)
    return root, points


def subset_logdir(cache: str, full: str, runs: int) -> Tuple[str, int]:
    """The first ``runs`` runs of ``full`` copied to their own logdir (same bytes)."""
    root = os.path.join(cache, f'logdir-{runs}-of-{os.path.basename(full)}')
    marker = os.path.join(root, '.complete.json')
    if not os.path.exists(marker):
        shutil.rmtree(root, ignore_errors=True)
        for name in run_names(runs):
            shutil.copytree(os.path.join(full, name), os.path.join(root, name))
        with open(marker, 'w') as f:
            json.dump({'points': runs * len(CONTEXTS) * len(TAGS) * STEPS, 'runs': runs}, f)
    with open(marker) as f:
        return root, json.load(f)['points']


def expected_points(runs: int) -> Dict[Tuple[str, str, str], int]:
    """{(run, context, tag): point count} the writers produced."""
    return {(name, context, tag): STEPS for name in run_names(runs) for context in CONTEXTS for tag in TAGS}
