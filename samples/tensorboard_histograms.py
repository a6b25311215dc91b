"""Histograms of known samples, as each writer family writes them, for checking how they are drawn.

* ``write_tbx_histogram``: tensorboardX's ``add_histogram`` (default ``bins='tensorflow'``: exponential
  buckets, a ``HistogramProto`` with ``min``/``max`` and only the buckets around the data);
* ``write_torch_histogram``: PyTorch's ``torch.utils.tensorboard.SummaryWriter.add_histogram`` (the
  same exponential buckets; needs ``torch``);
* ``write_tf1_histogram``: the ``HistogramProto`` TF1's C++ ``Histogram`` encodes (``histogram.cc``):
  limits 1e-12 · 1.1^k up to 1e20 mirrored around 0, ±DBL_MAX outermost, runs of empty buckets
  collapsed into one, written through the ``tensorboard`` package's ``EventFileWriter``;
* ``write_tf2_histogram``: TF2 ``histograms`` plugin tensors (k×3 rows of left edge, right edge,
  count): ``uniform=True`` as ``tf.summary.histogram`` writes them (30 buckets over [min, max]),
  ``uniform=False`` with TF1's exponential buckets as rows, empty ones at both ends included;
* ``write_tf2_summary_histogram`` and ``write_tf1_summary_histogram``: the same, written by TensorFlow
  itself (``tf.summary.histogram``; ``tf.compat.v1.summary.histogram`` run in a graph and written by
  ``tf.compat.v1.summary.FileWriter``, TF's C++ ``Histogram``). They need tensorflow, and date their
  events when they run.

Each writes one tag, ``HISTOGRAM_TAG``, at steps 0.. of the given samples, and returns nothing: the
samples are the expectation.
"""
from __future__ import annotations

import os
import sys
from typing import List, Sequence

import numpy as np

__all__ = ['HISTOGRAM_TAG', 'tf1_bucket_limits', 'tf1_histogram_proto', 'write_tbx_histogram',
           'write_torch_histogram', 'write_tf1_histogram', 'write_tf2_histogram', 'write_tf1_summary_histogram',
           'write_tf2_summary_histogram', 'known_samples']

HISTOGRAM_TAG = 'weights'
_START_TIME = 1_700_000_000.0


def known_samples() -> List[np.ndarray]:
    """Two samples whose shape matters: a narrow normal off zero (mean 0.30, the issue's example) and a
    skewed, two-sided mixture."""
    rng = np.random.default_rng(15)
    normal = rng.normal(0.30, 0.2, size=2000)
    mixture = np.concatenate([rng.exponential(0.5, size=1500), -rng.exponential(2.0, size=500)])
    return [normal, mixture]


def tf1_bucket_limits() -> np.ndarray:
    """TF1's default bucket limits (``histogram.cc`` ``InitDefaultBucketsInner``)."""
    positive = []
    limit = 1.0e-12
    while limit < 1.0e20:
        positive.append(limit)
        limit *= 1.1
    positive.append(sys.float_info.max)
    return np.array([-v for v in reversed(positive)] + [0.0] + positive)


def tf1_histogram_proto(values: np.ndarray):
    """What TF1's ``Histogram::EncodeToProto(proto, preserve_zero_buckets=false)`` writes for ``values``."""
    from tensorboard.compat.proto import summary_pb2

    limits = tf1_bucket_limits()
    counts = np.bincount(np.searchsorted(limits, values, side='right'), minlength=len(limits))[:len(limits)]
    proto = summary_pb2.HistogramProto(min=float(values.min()), max=float(values.max()), num=float(values.size),
                                       sum=float(values.sum()), sum_squares=float(values @ values))
    i = 0
    while i < len(counts):
        end, count = limits[i], counts[i]
        i += 1
        if count <= 0:  # a run of empty buckets is one bucket
            while i < len(counts) and counts[i] <= 0:
                end, count = limits[i], counts[i]
                i += 1
        proto.bucket_limit.append(float(end))
        proto.bucket.append(float(count))
    return proto


def _event_writer(directory: str):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    os.makedirs(directory, exist_ok=True)
    return EventFileWriter(directory, flush_secs=3600)


def _summary_event(value, step: int):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    return event_pb2.Event(wall_time=_START_TIME + step, step=step, summary=summary_pb2.Summary(value=[value]))


def write_tbx_histogram(directory: str, samples: Sequence[np.ndarray]) -> None:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(directory, flush_secs=3600)
    for step, values in enumerate(samples):
        writer.add_histogram(HISTOGRAM_TAG, values, step, walltime=_START_TIME + step)
    writer.close()


def write_torch_histogram(directory: str, samples: Sequence[np.ndarray]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(directory, flush_secs=3600)
    for step, values in enumerate(samples):
        writer.add_histogram(HISTOGRAM_TAG, values, step, walltime=_START_TIME + step)
    writer.close()


def write_tf1_histogram(directory: str, samples: Sequence[np.ndarray]) -> None:
    from tensorboard.compat.proto import summary_pb2

    writer = _event_writer(directory)
    for step, values in enumerate(samples):
        value = summary_pb2.Summary.Value(tag=HISTOGRAM_TAG, histo=tf1_histogram_proto(values))
        writer.add_event(_summary_event(value, step))
    writer.close()


def _exponential_rows(values: np.ndarray) -> np.ndarray:
    """TF1's buckets around the data, one empty bucket beyond it on each side, as k×3 rows."""
    limits = tf1_bucket_limits()[1:-1]  # finite edges
    counts = np.bincount(np.searchsorted(limits, values, side='right') - 1, minlength=len(limits) - 1)
    non_empty = np.flatnonzero(counts)
    first, last = max(non_empty[0] - 1, 0), min(non_empty[-1] + 1, len(limits) - 2)
    return np.stack([limits[first:last + 1], limits[first + 1:last + 2], counts[first:last + 1]], axis=1)


def write_tf2_histogram(directory: str, samples: Sequence[np.ndarray], uniform: bool = True) -> None:
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.histogram import metadata as histogram_metadata
    from tensorboard.plugins.histogram import summary_v2 as histogram_summary
    from tensorboard.util import tensor_util

    writer = _event_writer(directory)
    for step, values in enumerate(samples):
        if uniform:
            value = histogram_summary.histogram_pb(HISTOGRAM_TAG, values).value[0]
        else:
            value = summary_pb2.Summary.Value(
                tag=HISTOGRAM_TAG, tensor=tensor_util.make_tensor_proto(_exponential_rows(values).astype(np.float64)),
                metadata=histogram_metadata.create_summary_metadata(HISTOGRAM_TAG, None))
        writer.add_event(_summary_event(value, step))
    writer.close()


def write_tf2_summary_histogram(directory: str, samples: Sequence[np.ndarray]) -> None:
    """TF2's ``tf.summary.histogram`` (30 uniform buckets over [min, max]) through TF's own file writer."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        for step, values in enumerate(samples):
            tf.summary.histogram(HISTOGRAM_TAG, values, step=step)
    writer.close()


def write_tf1_summary_histogram(directory: str, samples: Sequence[np.ndarray]) -> None:
    """TF1's ``tf.compat.v1.summary.histogram`` op, run in a graph session: a ``HistogramProto`` with TF's
    exponential buckets, written by ``tf.compat.v1.summary.FileWriter``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        values = v1.placeholder(tf.float64, shape=[None])
        summary = v1.summary.histogram(HISTOGRAM_TAG, values)
        writer = v1.summary.FileWriter(directory)
        with v1.Session() as session:
            for step, sample in enumerate(samples):
                writer.add_summary(session.run(summary, {values: sample}), step)
        writer.close()
