"""Histograms drawn true: what Aim's UI reads (``Distribution.to_np_histogram()``) has the sample's mean
and quantiles, for every writer family; the exact source buckets are kept beside it.

Unit level: the re-binning (``connectors.aim_objects.uniform_buckets``). End to end: histograms of
known samples written by tensorboardX, PyTorch, TF1-style protos and TF2-style tensors
(``samples.tensorboard_histograms``) and by TensorFlow itself (TF1's and TF2's summary ops), converted by
``pipelines.tf_to_aim.run`` and read back through Aim's SDK, the exact buckets compared with TensorBoard's
own ``EventAccumulator``.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from connectors.aim_objects import REBIN_BUCKETS, distribution_buckets, to_distribution, uniform_buckets
from samples.tensorboard_histograms import (HISTOGRAM_TAG, known_samples, write_tbx_histogram, write_tf1_histogram,
                                            write_tf2_histogram, write_torch_histogram)
from samples.tensorflow_zoo import HISTOGRAM_LOGDIR

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


# ------------------------------------------------------------------------------------------ unit level

def test_rebinning_splits_each_count_by_overlap_over_the_data_range():
    edges = np.array([-10.0, 0.0, 1.0, 3.0, 100.0])
    counts = np.array([0.0, 2.0, 4.0, 0.0])  # data from 0 to 3: the empty outer buckets are not the range
    hist, (low, high) = uniform_buckets(edges, counts, buckets=3)
    assert (low, high) == (0.0, 3.0)
    assert hist.tolist() == [2.0, 2.0, 2.0]  # [1, 3] holds 4: half in [1, 2], half in [2, 3]


def test_rebinning_keeps_the_total_and_a_single_point():
    edges = np.array([0.5, 0.5, 2.0])  # a zero-width bucket at the data's low end
    hist, (low, high) = uniform_buckets(edges, np.array([3.0, 1.0]), buckets=4)
    assert (low, high) == (0.5, 2.0) and hist.sum() == 4.0
    hist, (low, high) = uniform_buckets(np.array([1.0, 1.0]), np.array([5.0]))
    assert hist.tolist() == [5.0] and (low, high) == (1.0, 1.0)


def test_uniform_buckets_are_stored_as_they_are_and_others_re_binned():
    uniform = to_distribution({'edges': np.linspace(-1, 2, 4).tolist(), 'counts': [0.0, 1.0, 2.0]})
    assert uniform.weights.tolist() == [0.0, 1.0, 2.0] and uniform.range == [-1.0, 2.0]
    payload = {'edges': [-1.0, 0.5, 2.0, 7.25], 'counts': [3.0, 5.0, 2.0]}
    exponential = to_distribution(payload)
    assert exponential.bin_count == REBIN_BUCKETS and exponential.range == [-1.0, 7.25]
    assert exponential.weights.sum() == 10.0
    edges, counts = distribution_buckets(exponential)  # the exact buckets, kept
    assert edges.tolist() == payload['edges'] and counts.tolist() == payload['counts']


# ---------------------------------------------------------------------------------------- end to end

def _mean_and_quantiles(weights: np.ndarray, edges: np.ndarray):
    """As a reader of Aim's histogram sees them: counts at bucket centres; quantiles interpolated
    linearly inside a bucket."""
    centres = (edges[:-1] + edges[1:]) / 2
    mean = float((weights * centres).sum() / weights.sum())
    cumulative = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    return mean, [float(np.interp(q, cumulative, edges)) for q in QUANTILES]


_WRITERS = {
    'tensorboardx': write_tbx_histogram,
    'tf1_proto': write_tf1_histogram,
    'tf2_tensor': write_tf2_histogram,
    'tf2_tensor_exponential': lambda directory, samples: write_tf2_histogram(directory, samples, uniform=False),
    'pytorch': write_torch_histogram,
}


def _accumulated_buckets(run_dir: str):
    """Per step, TensorBoard's own reading of the histogram (the accumulator its plugins read, which
    turns TF1 protos into TF2 k×3 rows by ``data_compat``): (left edges + last right edge, counts)."""
    from tensorboard.backend.event_processing import plugin_event_accumulator
    from tensorboard.util import tensor_util

    accumulator = plugin_event_accumulator.EventAccumulator(
        run_dir, size_guidance={plugin_event_accumulator.TENSORS: 0})
    accumulator.Reload()
    out = {}
    for event in accumulator.Tensors(HISTOGRAM_TAG):
        rows = tensor_util.make_ndarray(event.tensor_proto)
        out[event.step] = (rows[:, 0].tolist() + [float(rows[-1, 1])], rows[:, 2].tolist())
    return out


def _assert_drawn_as_the_samples(repo_path, logdir, samples):
    """Every run's histogram, read back through Aim's SDK, drawn with each sample's mean and quantiles to
    within one bucket, its total the sample's size, and its exact buckets TensorBoard's; returns the
    run names seen."""
    from aim import Repo
    from aim.storage.context import Context

    repo = Repo.from_path(str(repo_path))
    seen = set()
    for run in repo.iter_runs():
        accumulated = _accumulated_buckets(str(logdir / run.name))
        sequence = run.get_distribution_sequence(HISTOGRAM_TAG, Context({}))
        steps, (distributions, _epochs, _times) = sequence.data.items_list()
        assert steps == list(range(len(samples))), run.name
        for step, distribution in zip(steps, distributions):
            weights, edges = distribution.to_np_histogram()  # what Aim's UI draws
            width = edges[1] - edges[0]
            sample = samples[step]
            mean, quantiles = _mean_and_quantiles(weights, edges)
            where = f'{run.name} step {step}'
            assert abs(mean - sample.mean()) <= width, (where, mean, sample.mean(), width)
            for q, got in zip(QUANTILES, quantiles):
                assert abs(got - np.quantile(sample, q)) <= width, (where, q, got, np.quantile(sample, q), width)
            assert weights.sum() == pytest.approx(sample.size)
            # the exact buckets are kept: the ones TensorBoard reads (float64 here, float32 there)
            exact_edges, exact_counts = distribution_buckets(distribution)
            want_edges, want_counts = accumulated[step]
            assert exact_counts.tolist() == want_counts, where
            np.testing.assert_allclose(exact_edges, want_edges, rtol=1e-6)
        seen.add(run.name)
    return seen


@pytest.mark.slow
def test_histograms_read_back_with_the_samples_mean_and_quantiles(tmp_path):
    from pipelines import tf_to_aim

    if importlib.util.find_spec('torch') is None:
        pytest.fail('torch is a dev dependency (setup.py dev extra): install it to run this test')
    samples = known_samples()
    logdir, repo_path = tmp_path / 'logs', tmp_path / 'repo'
    for name, write in _WRITERS.items():
        write(str(logdir / name), samples)
    assert tf_to_aim.run(['--logdir', str(logdir), '--repo', str(repo_path),
                          '--skipped', str(tmp_path / 'skipped.jsonl')]) == 0
    assert _assert_drawn_as_the_samples(repo_path, logdir, samples) == set(_WRITERS)


@pytest.mark.slow
def test_histograms_written_by_tensorflow_read_back_with_the_samples_mean_and_quantiles(tensorflow_zoo, tmp_path):
    """TensorFlow's own writers: TF2 ``tf.summary.histogram`` (30 uniform buckets, stored as they are) and
    TF1's ``tf.compat.v1.summary.histogram`` op (a ``HistogramProto`` of TF's C++ exponential buckets,
    re-binned)."""
    from pipelines import tf_to_aim

    logdir, repo_path = tensorflow_zoo / HISTOGRAM_LOGDIR, tmp_path / 'repo'
    assert tf_to_aim.run(['--logdir', str(logdir), '--repo', str(repo_path),
                          '--skipped', str(tmp_path / 'skipped.jsonl')]) == 0
    assert _assert_drawn_as_the_samples(repo_path, logdir, known_samples()) == {'tf1_summary', 'tf2_summary'}
