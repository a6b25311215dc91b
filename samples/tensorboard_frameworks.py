"""A team bucket as PyTorch, Lightning and tensorboardX users leave it, written by the real packages.

``write_framework_bucket(root)`` writes, below ``root``::

    lightning_logs/version_0/   Lightning's TensorBoardLogger: hparams (lr 0.01), train_loss, hparams.yaml
    lightning_logs/version_1/   the same with lr 0.02
    torch_run/                  torch.utils.tensorboard.SummaryWriter: add_scalar, add_histogram,
    torch_run/loss_train/         add_scalars('loss', {'train', 'val'}) (one directory per key),
    torch_run/loss_val/
    torch_run/1700000000.5/       add_hparams (a sub-run named by a time),
    torch_run/00000/default/      add_embedding (projector files: no event file)
    tbx_run/                    tensorboardX: the run's own scalars, and contexts train/ and eval/
    tbx_run/train/  tbx_run/eval/

and returns ``FRAMEWORK_HPARAMS``-style expectations: {event-file directory: hparams written there}.
Lightning and PyTorch date their events when they run (they take no wall time), so tests compare with
TensorBoard's own ``EventAccumulator`` reading of the same files, not with dates chosen here.
"""
from __future__ import annotations

import os
from typing import Any, Dict

import numpy as np

__all__ = ['write_framework_bucket', 'write_lightning_version', 'write_torch_run', 'write_tbx_contexts',
           'LIGHTNING_HPARAMS', 'TORCH_HPARAMS_RUN']

STEPS = 5
LIGHTNING_HPARAMS = {0: {'lr': 0.01, 'layers': 2, 'optimizer': 'adam'},
                     1: {'lr': 0.02, 'layers': 2, 'optimizer': 'adam'}}
TORCH_HPARAMS_RUN = '1700000000.5'


def write_lightning_version(root: str, version: int, hparams: Dict[str, Any]) -> str:
    """One ``TensorBoardLogger`` version, as a ``Trainer`` leaves it; returns its directory."""
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(root, name='lightning_logs', version=version)  # hp_metric: as a Trainer logs
    logger.log_hyperparams(hparams)
    for step in range(STEPS):
        logger.log_metrics({'train_loss': 1.0 / (step + 1 + version), 'epoch': float(step // 2)}, step=step)
    logger.finalize('success')
    return logger.log_dir


def write_torch_run(directory: str) -> Dict[str, Dict[str, Any]]:
    """PyTorch's ``SummaryWriter`` with every method the issue names; returns {directory: hparams}."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(directory, flush_secs=3600)
    rng = np.random.default_rng(3)
    for step in range(STEPS):
        writer.add_scalar('accuracy', 0.5 + step / 20, step)
        writer.add_scalars('loss', {'train': 1.0 / (step + 1), 'val': 1.2 / (step + 1)}, step)
        writer.add_histogram('fc/weight', rng.normal(0.3, 0.2, 200), step)
    writer.add_embedding(rng.normal(size=(6, 3)), metadata=[f'point {i}' for i in range(6)], global_step=0)
    hparams = {'lr': 0.1, 'batch_size': 32}
    writer.add_hparams(hparams, {'hparam/accuracy': 0.7}, run_name=TORCH_HPARAMS_RUN)
    writer.close()
    return {os.path.join(directory, TORCH_HPARAMS_RUN): hparams}


def write_tbx_contexts(directory: str) -> None:
    """A tensorboardX run with scalars of its own beside its train/ and eval/ context directories."""
    from tensorboardX import SummaryWriter

    for sub, tags in (('', ('learning_rate',)), ('train', ('loss',)), ('eval', ('loss', 'accuracy'))):
        writer = SummaryWriter(os.path.join(directory, sub) if sub else directory, flush_secs=3600)
        for step in range(STEPS):
            for tag in tags:
                writer.add_scalar(tag, (step + len(tag)) / 10, step, walltime=1_700_000_000.0 + 60 * step)
        writer.close()


def write_framework_bucket(root: str) -> Dict[str, Dict[str, Any]]:
    """The whole bucket (see the module docstring); returns {event-file directory: hparams written there}."""
    hparams = {}
    for version, values in LIGHTNING_HPARAMS.items():
        hparams[write_lightning_version(root, version, values)] = values
    hparams.update(write_torch_run(os.path.join(root, 'torch_run')))
    write_tbx_contexts(os.path.join(root, 'tbx_run'))
    return hparams
