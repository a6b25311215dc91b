"""The MLflow benchmark's store: many small runs in a SQLite store, as most people's stores are (issue 16).

``ensure_store(cache, runs)`` writes, once, ``cache/mlflow-<runs>-v<VERSION>/``: ``mlflow.db`` and an
``artifacts/`` directory, filled through ``MlflowClient`` and cached like the TensorBoard logdir.

* ``EXPERIMENTS`` experiments, the runs dealt out among them in turn;
* each run: ``PARAMS`` params, two user tags, ``len(KEYS)`` metrics x ``STEPS`` steps (30 points) in one
  ``log_batch``, then terminated (FINISHED, with an end time), as a finished training script leaves it;
* every ``ARTIFACT_EVERY``-th run also logs a PNG image and a text file (``log_image``-free: plain
  ``log_artifact``), so that artifact listing is measured where a run has artifacts and not only where
  it has none.

The database is written in ``/dev/shm`` and then copied into the cache: MLflow's SQLite store commits
each call with an fsync, ten times slower on this disk. Values are ``samples.mlflow_store.metric_value``.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from typing import Dict, Tuple

from samples.mlflow_store import START_MS, metric_value, scratch_dir

__all__ = ['ensure_store', 'expected_counts', 'EXPERIMENTS', 'KEYS', 'STEPS', 'PARAMS', 'ARTIFACT_EVERY',
           'VERSION']

VERSION = 1
EXPERIMENTS = ('baseline', 'lr-sweep', 'arch-sweep', 'ablation')
KEYS = ('loss', 'accuracy', 'lr')
STEPS = 10  # 3 keys x 10 steps = 30 points a run
PARAMS = 6
ARTIFACT_EVERY = 100  # runs 0, 100, 200, ... log a PNG and a text file


def expected_counts(runs: int) -> Dict[str, int]:
    """What a conversion of the whole store must report: runs, metric points, artifacts (each one point)."""
    with_artifacts = len(range(0, runs, ARTIFACT_EVERY))
    return {'runs': runs, 'metric_points': runs * len(KEYS) * STEPS, 'artifacts': 2 * with_artifacts}


def _png(seed: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new('RGB', (16, 16), (seed % 256, 80, 160)).save(out, format='PNG')
    return out.getvalue()


def _fill(uri: str, artifacts: str, runs: int) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(uri)
    experiment_ids = [client.create_experiment(name, artifact_location=f'file://{artifacts}/{name}')
                      for name in EXPERIMENTS]
    with scratch_dir('runferry-bench-files-') as files:
        for i in range(runs):
            begin = START_MS + 60_000 * i
            run = client.create_run(experiment_ids[i % len(experiment_ids)], start_time=begin,
                                    run_name=f'trial-{i:05d}')
            run_id = run.info.run_id
            metrics = [Metric(key, metric_value(key, step, i), begin + 1000 * step, step)
                       for key in KEYS for step in range(STEPS)]
            params = [Param(f'p{k}', str((i * (k + 3)) % 17)) for k in range(PARAMS)]
            tags = [RunTag('shard', str(i % 4)), RunTag('owner', 'bench')]
            client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
            if i % ARTIFACT_EVERY == 0:
                image, text = os.path.join(files, 'sample.png'), os.path.join(files, 'notes.txt')
                with open(image, 'wb') as out:
                    out.write(_png(i))
                with open(text, 'w') as out:
                    out.write(f'run {i}: notes\n')
                client.log_artifact(run_id, image, 'plots')
                client.log_artifact(run_id, text)
            client.set_terminated(run_id, 'FINISHED', end_time=begin + 1000 * STEPS)


def ensure_store(cache: str, runs: int) -> Tuple[str, Dict[str, int]]:
    """(``sqlite:///…`` URI, ``expected_counts``) of ``cache/mlflow-<runs>-v<VERSION>``, written unless
    already complete."""
    root = os.path.abspath(os.path.join(cache, f'mlflow-{runs}-v{VERSION}'))
    marker = os.path.join(root, '.complete.json')
    database = os.path.join(root, 'mlflow.db')
    if not os.path.exists(marker):
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        with scratch_dir('runferry-bench-mlflow-') as scratch:
            _fill(f'sqlite:///{scratch}/mlflow.db', os.path.join(root, 'artifacts'), runs)
            shutil.copyfile(os.path.join(scratch, 'mlflow.db'), database)
        with open(marker, 'w') as out:
            json.dump(expected_counts(runs), out)
    with open(marker) as stream:
        return f'sqlite:///{database}', json.load(stream)


if __name__ == '__main__':
    import sys
    import time

    started = time.perf_counter()
    print(ensure_store(sys.argv[1] if len(sys.argv) > 1 else '.bench', int(sys.argv[2]) if len(sys.argv) > 2
                       else 1052), f'{time.perf_counter() - started:.1f}s')
