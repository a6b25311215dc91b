"""A team bucket as PyTorch, Lightning and tensorboardX users leave it, written by the real packages;
and a Keras run as TensorFlow's ``TensorBoard`` callback leaves it (``write_keras_run``).

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
           'write_keras_run', 'LIGHTNING_HPARAMS', 'TORCH_HPARAMS_RUN', 'KERAS_EPOCHS', 'KERAS_CONTEXTS']

STEPS = 5
LIGHTNING_HPARAMS = {0: {'lr': 0.01, 'layers': 2, 'optimizer': 'adam'},
                     1: {'lr': 0.02, 'layers': 2, 'optimizer': 'adam'}}
TORCH_HPARAMS_RUN = '1700000000.5'
KERAS_EPOCHS = 3
KERAS_CONTEXTS = ('train', 'validation')  # the directories Keras' TensorBoard callback writes into


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


def write_keras_run(directory: str) -> None:
    """A tiny Keras classifier ``fit`` with ``tf.keras.callbacks.TensorBoard(histogram_freq=1)``: 48 random
    samples (a quarter held out for validation), batches of 12, ``KERAS_EPOCHS`` epochs. Needs tensorflow.

    The callback leaves ``train/`` (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``, a
    30-bucket histogram of every weight each epoch, and the model's config as a ``graph_keras_model``
    summary) and ``validation/`` (``epoch_*`` and ``evaluation_*_vs_iterations``, by batch), all dated
    when they were written: tests compare with TensorBoard's reading of the files."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(15)
    rng = np.random.default_rng(15)
    features = rng.normal(size=(48, 4)).astype('float32')
    labels = (features @ np.array([1.0, -0.5, 0.25, 0.0], dtype='float32') > 0).astype('int32')
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, activation='relu'),
                                 tf.keras.layers.Dense(2, activation='softmax')])
    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    callback = tf.keras.callbacks.TensorBoard(log_dir=directory, histogram_freq=1)
    model.fit(features, labels, epochs=KERAS_EPOCHS, batch_size=12, validation_split=0.25, verbose=0,
              callbacks=[callback])


def write_framework_bucket(root: str) -> Dict[str, Dict[str, Any]]:
    """The whole bucket (see the module docstring); returns {event-file directory: hparams written there}."""
    hparams = {}
    for version, values in LIGHTNING_HPARAMS.items():
        hparams[write_lightning_version(root, version, values)] = values
    hparams.update(write_torch_run(os.path.join(root, 'torch_run')))
    write_tbx_contexts(os.path.join(root, 'tbx_run'))
    return hparams
