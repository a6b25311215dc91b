"""Everything the tests need written by TensorFlow itself, in one process (importing TensorFlow costs
~20 s here, so it is paid once)::

    python -m samples.tensorflow_zoo ROOT

writes, below ``ROOT``::

    keras_logs/fit/{train,validation}/   Keras' TensorBoard callback (``tensorboard_frameworks.write_keras_run``)
    histograms/tf2_summary/              ``tf.summary.histogram`` of ``known_samples()``
    histograms/tf1_summary/              ``tf.compat.v1.summary.histogram`` of ``known_samples()``
"""
from __future__ import annotations

import os
import sys

from samples.tensorboard_frameworks import write_keras_run
from samples.tensorboard_histograms import known_samples, write_tf1_summary_histogram, write_tf2_summary_histogram

__all__ = ['KERAS_LOGDIR', 'KERAS_RUN', 'HISTOGRAM_LOGDIR', 'write_tensorflow_zoo']

KERAS_LOGDIR = 'keras_logs'  # a logdir; the Keras run is its directory KERAS_RUN
KERAS_RUN = 'fit'
HISTOGRAM_LOGDIR = 'histograms'


def write_tensorflow_zoo(root: str) -> None:
    write_keras_run(os.path.join(root, KERAS_LOGDIR, KERAS_RUN))
    samples = known_samples()
    write_tf2_summary_histogram(os.path.join(root, HISTOGRAM_LOGDIR, 'tf2_summary'), samples)
    write_tf1_summary_histogram(os.path.join(root, HISTOGRAM_LOGDIR, 'tf1_summary'), samples)


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: python -m samples.tensorflow_zoo ROOT')
    write_tensorflow_zoo(sys.argv[1])
