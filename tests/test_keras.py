"""A logdir as Keras' ``TensorBoard`` callback writes it through TensorFlow, end to end, under each layout.

The run (``samples.tensorflow_zoo``: a tiny model ``fit`` with ``histogram_freq=1``) is written by
TensorFlow itself; each conversion is read back through Aim's SDK and compared, directory by directory,
with TensorBoard's own ``plugin_event_accumulator`` reading of the same files (Keras writes TF2 summaries:
scalars and histograms are tensors, which the legacy ``EventAccumulator`` does not list as scalars).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from connectors.aim_objects import distribution_buckets
from pipelines import tf_to_aim
from samples.tensorboard_frameworks import KERAS_CONTEXTS, KERAS_EPOCHS
from samples.tensorflow_zoo import KERAS_LOGDIR, KERAS_RUN
from tests.readback import assert_same_points, read_metrics, read_runs

pytestmark = pytest.mark.slow

# Keras' directory -> (Aim run, context) under each layout
LAYOUT_RUNS = {
    'aim': {context: (KERAS_RUN, context) for context in KERAS_CONTEXTS},
    'tensorboard': {context: (f'{KERAS_RUN}/{context}', None) for context in KERAS_CONTEXTS},
}


def accumulated(directory):
    """({tag: [(step, value, wall time)]} of the scalars, {tag: [(step, total count, wall time)]} of the
    histograms, {tag: plugin} of everything else) as TensorBoard reads one directory's event files."""
    from tensorboard.backend.event_processing import plugin_event_accumulator
    from tensorboard.util import tensor_util

    accumulator = plugin_event_accumulator.EventAccumulator(
        str(directory), size_guidance={plugin_event_accumulator.TENSORS: 0})
    accumulator.Reload()
    scalars, histograms, others = {}, {}, {}
    for tag in accumulator.Tags()['tensors']:
        plugin = accumulator.SummaryMetadata(tag).plugin_data.plugin_name
        events = accumulator.Tensors(tag)
        if plugin == 'scalars':
            scalars[tag] = [(e.step, tensor_util.make_ndarray(e.tensor_proto).item(), e.wall_time) for e in events]
        elif plugin == 'histograms':
            histograms[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)[:, 2].sum()), e.wall_time)
                               for e in events]
        else:
            others[tag] = plugin
    return scalars, histograms, others


def read_distributions(repo_path):
    """{(run name, context as sorted JSON, name): [(step, Distribution)]} through Aim's SDK."""
    from aim import Repo
    from aim.sdk.sequences.distribution_sequence import Distributions

    out = {}
    for run in Repo.from_path(str(repo_path)).iter_runs():
        for name, context, _run in run.iter_sequence_info_by_type(Distributions.allowed_dtypes()):
            steps, (distributions, _epochs, _times) = run.get_distribution_sequence(name, context).data.items_list()
            key = (run.name, json.dumps(context.to_dict(), sort_keys=True), name)
            assert key not in out, f'duplicate sequence {key}'
            out[key] = list(zip(steps, distributions))
    return out


def _context(context):
    return json.dumps({'entry': context} if context else {}, sort_keys=True)


@pytest.fixture(scope='module')
def keras_logdir(tensorflow_zoo):
    """The logdir holding the Keras run, and TensorBoard's reading of each of its directories."""
    logdir = tensorflow_zoo / KERAS_LOGDIR
    return logdir, {context: accumulated(logdir / KERAS_RUN / context) for context in KERAS_CONTEXTS}


def test_keras_wrote_what_the_tests_expect(keras_logdir):
    """Guards the comparisons below against a Keras that writes something else (or nothing)."""
    _logdir, source = keras_logdir
    train_scalars, train_histograms, train_others = source['train']
    validation_scalars, validation_histograms, _ = source['validation']
    for scalars in (train_scalars, validation_scalars):
        assert {'epoch_loss', 'epoch_accuracy'} <= set(scalars)
        assert [step for step, _, _ in scalars['epoch_loss']] == list(range(KERAS_EPOCHS))
    assert len(train_histograms) == 4 and not validation_histograms  # kernel and bias of both layers
    assert all(len(points) == KERAS_EPOCHS for points in train_histograms.values())
    assert train_others == {'keras': 'graph_keras_model'}  # the model's config, not a graph Aim can hold


@pytest.mark.parametrize('layout', sorted(LAYOUT_RUNS))
def test_every_scalar_and_weight_histogram_under_each_layout(keras_logdir, layout, tmp_path):
    logdir, source = keras_logdir
    repo, skipped = tmp_path / 'aim', tmp_path / 'skipped.jsonl'
    assert tf_to_aim.run(['--logdir', str(logdir), '--repo', str(repo), '--skipped', str(skipped),
                          '--layout', layout]) == 0
    runs = LAYOUT_RUNS[layout]
    assert sorted(read_runs(str(repo))) == sorted({run for run, _ in runs.values()})

    # every scalar: step, value (float32-exact) and wall time
    expected = {(run, _context(context), tag): points
                for directory, (run, context) in runs.items()
                for tag, points in source[directory][0].items()}
    assert_same_points(read_metrics(str(repo)), expected)

    # every weight histogram, each step's total count the source's
    distributions = read_distributions(repo)
    want = {(run, _context(context), tag): points
            for directory, (run, context) in runs.items()
            for tag, points in source[directory][1].items()}
    assert sorted(distributions) == sorted(want)
    for key, points in want.items():
        got = distributions[key]
        assert [step for step, _ in got] == [step for step, _, _ in points], key
        for (step, distribution), (_, total, _) in zip(got, points):
            weights, edges = distribution.to_np_histogram()  # what Aim's UI draws
            assert weights.sum() == pytest.approx(total), (key, step)
            assert len(weights) == 30 and np.allclose(np.diff(edges), edges[1] - edges[0])  # Keras' buckets
            assert distribution_buckets(distribution)[1].sum() == total, (key, step)

    # each run starts and ends with its data (Keras dates its model-config summary ~seconds before)
    for name, run in read_runs(str(repo)).items():
        times = [point[-1] for directory, (run_name, _) in runs.items() if run_name == name
                 for kind in source[directory][:2] for points in kind.values() for point in points]
        assert run['creation_time'] == pytest.approx(min(times), abs=1e-3), name
        assert run['end_time'] == pytest.approx(max(times), abs=1e-3), name

    # the model's config summary is not dropped silently: one dead letter naming its plugin
    letters = [json.loads(line) for line in open(skipped)]
    assert [(letter['reason'], letter['count']) for letter in letters] == [
        ("unsupported plugin 'graph_keras_model'", 1)]
    assert f'{KERAS_RUN}/train/' in letters[0]['source']
