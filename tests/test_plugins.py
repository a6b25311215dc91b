"""Images, histograms, text, audio and hparams from TensorBoard logs into Aim; other plugins reported.

Unit level: the pure decoders and converters. End to end: logs written by tensorboardX and by
TF2-style writers (``samples.tensorboard_plugins``) converted by ``pipelines.tf_to_aim.run`` into a
temporary repo and read back through the Aim SDK.
"""
from __future__ import annotations

import io
import json
import re
import sys

import numpy as np
import pytest
from PIL import Image as PILImage
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.histogram import summary_v2 as histogram_summary
from tensorboard.plugins.text import summary_v2 as text_summary

from connectors.aim_objects import distribution_buckets, to_audio, to_distribution, to_image, to_text, uniform_buckets
from samples.tensorboard_plugins import CUSTOM_PLUGIN, png_bytes, sample_image, wav_bytes, write_tbx_plugins, \
    write_tf2_plugins
from transforms.events import UnsupportedValue, decode_value
from transforms.plugins import histogram_proto_buckets, render_text

DBL_MAX = sys.float_info.max


# ------------------------------------------------------------------------------------------ unit level

def test_tf1_histogram_buckets_follow_tensorboard_data_compat():
    histo = summary_pb2.HistogramProto(min=-0.5, max=3.0, bucket_limit=[-1.0, 0.0, 1.0, 2.5, DBL_MAX],
                                       bucket=[0, 2, 0, 4, 1])
    # empty end buckets dropped; outer edges are min and max instead of the +-DBL_MAX limits
    assert histogram_proto_buckets(histo) == ([-0.5, 0.0, 1.0, 2.5, 3.0], [2.0, 0.0, 4.0, 1.0])
    value = summary_pb2.Summary.Value(tag='h', histo=summary_pb2.HistogramProto(bucket_limit=[1.0], bucket=[0]))
    with pytest.raises(UnsupportedValue, match='empty histogram') as raised:
        decode_value(value, None)
    assert raised.value.plugin == 'histograms'


def test_tf2_histogram_tensor_keeps_float64_edges():
    data = np.array([0.1, 0.2, 0.2, 0.7, 1.3])
    value = histogram_summary.histogram_pb('h', data, buckets=4).value[0]
    kind, payload = decode_value(value, value.metadata)
    assert kind == 'distribution'
    assert payload['edges'] == np.linspace(0.1, 1.3, 5).tolist()
    assert payload['counts'] == [3.0, 0.0, 1.0, 1.0]


def test_text_tensors_render_as_strings_and_markdown_tables():
    value = text_summary.text_pb('t', 'just *this*').value[0]
    assert decode_value(value, value.metadata) == ('text', 'just *this*')
    assert render_text(np.array([b'a', b'b'])) == '|   |\n|---|\n| a |\n| b |'
    table = render_text(np.array([['x', 'a|b'], ['1', 'two\nlines']]))
    assert table.splitlines()[2:] == ['| x | a\\|b |', '| 1 | two<br>lines |']
    cube = render_text(np.array([[['a', 'b']], [['c', 'd']]]))
    assert '**[0]**' in cube and '**[1]**' in cube and '| c | d |' in cube


def test_distribution_converter_keeps_non_uniform_edges_exactly():
    payload = {'edges': [-1.0, 0.5, 2.0, 7.25], 'counts': [3.0, 5.0, 2.0]}
    distribution = to_distribution(payload)
    edges, counts = distribution_buckets(distribution)
    assert edges.tolist() == payload['edges'] and counts.tolist() == payload['counts']
    assert distribution.range == [-1.0, 7.25]  # drawn re-binned on uniform buckets (tests/test_histograms.py)
    with pytest.raises(ValueError, match='need 4 edges'):
        to_distribution({'edges': [0.0, 1.0], 'counts': [1.0, 2.0, 3.0]})


def test_image_and_audio_converters_keep_the_encoded_bytes():
    pixels = sample_image(3)
    data = png_bytes(pixels)
    image = to_image([{'data': data, 'format': 'png', 'caption': 'c'}])
    assert bytes(image.storage['data'].load()) == data and image.caption == 'c' and image.size == (5, 6)
    assert (np.asarray(image.to_pil_image()) == pixels).all()
    assert len(to_image([{'data': data, 'format': 'png', 'caption': ''}] * 2)) == 2
    clip = wav_bytes(np.zeros((10, 1)), 8000)
    audio = to_audio([{'data': clip, 'format': 'wav', 'caption': 'x', 'rate': 8000}])
    assert audio.get().read() == clip
    assert to_text('hi').data == 'hi'


def _storage(obj):
    return {key: (bytes(value.load()) if hasattr(value, 'load') else value)
            for key, value in obj.storage.container.items()}


@pytest.mark.parametrize('edges, counts', [
    ([-1.0, 0.5, 2.0, 7.25], [3.0, 5.0, 2.0]),
    ([0.1, 0.1 + 1e-9, 1 / 3, 5e300], [0.0, 1.0, 2.5]),
    ([2.0, 3.0], [7.0]),
])
def test_distribution_converter_stores_what_aims_own_constructor_does(edges, counts):
    """The converter builds the object's storage directly; it must be what ``aim.Distribution(hist=...,
    bin_range=...)`` stores (Aim's uniform edges included) for the counts it draws (re-binned when the
    buckets are not uniform), plus the exact edges and counts."""
    from aim import Distribution

    ours = _storage(to_distribution({'edges': edges, 'counts': counts}))
    drawn, bin_range = ((np.asarray(counts), (edges[0], edges[-1])) if len(edges) == 2
                        else uniform_buckets(np.asarray(edges), np.asarray(counts)))
    aims = _storage(Distribution(hist=drawn, bin_range=bin_range))
    assert np.frombuffer(ours.pop('edges')).tolist() == edges
    assert np.frombuffer(ours.pop('counts')).tolist() == counts
    assert ours == aims and list(ours) == list(aims)


@pytest.mark.parametrize('mode', ['RGB', 'L', 'RGBA'])
def test_image_converter_stores_what_aims_own_constructor_does(mode):
    """Mode and size come from the decoder's header read (no second open) or, without them, from
    Pillow: either way what ``aim.Image(pil_image)`` stores, except that the encoded bytes are kept."""
    from aim import Image

    pil_image = PILImage.fromarray(sample_image(4)).convert(mode)
    buffer = io.BytesIO()
    pil_image.save(buffer, format='PNG')
    data = buffer.getvalue()
    value = summary_pb2.Summary.Value(tag='img', image=summary_pb2.Summary.Image(encoded_image_string=data))
    kind, payload = decode_value(value, None)
    assert kind == 'image' and payload[0]['mode'] == mode and (payload[0]['width'], payload[0]['height']) == (5, 6)
    from_header = _storage(to_image(payload))
    from_bytes = _storage(to_image([{'data': data, 'format': 'png', 'caption': ''}]))
    aims = _storage(Image(pil_image))
    assert from_header == from_bytes
    assert from_header.pop('data') == data
    aims.pop('data')  # Aim re-encodes; the converter keeps the source's bytes
    assert from_header == {**aims, 'format': 'png'}  # Aim's format is its own default; ours, the source's


def test_undecodable_image_is_reported_not_raised():
    from transforms.events import EventDecoder
    from tensorboard.compat.proto import event_pb2

    value = summary_pb2.Summary.Value(tag='img', image=summary_pb2.Summary.Image(encoded_image_string=b'nope'))
    decoded = list(EventDecoder().decode(event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[value]))))
    assert len(decoded) == 1 and isinstance(decoded[0], UnsupportedValue)
    assert decoded[0].plugin == 'undecodable' and 'img' in str(decoded[0])


# ---------------------------------------------------------------------------------------- end to end

def _context(name):
    return {'entry': name} if name else {}


def _readback(repo_path):
    """{run name: {'attrs': ..., 'seqs': {(kind, name, context json): {step: (value, time)}}}}."""
    from aim import Repo

    kinds = {'images': ('aim.image', 'list(aim.image)'), 'distributions': ('aim.distribution',),
             'texts': ('aim.text',), 'audios': ('aim.audio', 'list(aim.audio)')}
    getters = {'images': 'get_image_sequence', 'distributions': 'get_distribution_sequence',
               'texts': 'get_text_sequence', 'audios': 'get_audio_sequence'}
    out = {}
    repo = Repo.from_path(repo_path)
    for run in repo.iter_runs():
        seqs = {}
        for kind, dtypes in kinds.items():
            for name, context, _ in run.iter_sequence_info_by_type(dtypes):
                sequence = getattr(run, getters[kind])(name, context)
                steps, (values, _epochs, times) = sequence.data.items_list()
                seqs[(kind, name, json.dumps(context.to_dict(), sort_keys=True))] = {
                    step: (value, time) for step, value, time in zip(steps, values, times)}
        out[run.name] = {'attrs': {k: run.get(k) for k in ('hparams', 'hparams_config')}, 'seqs': seqs}
    return out


_AIM_KIND = {'image': 'images', 'distribution': 'distributions', 'text': 'texts', 'audio': 'audios'}


def _check_point(kind, expected, actual):
    if kind == 'image':
        actual = actual if isinstance(actual, list) else [actual]
        assert len(actual) == len(expected)
        for image, (pixels, fmt) in zip(actual, expected):
            assert image.format == fmt
            assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(bytes(image.storage['data'].load())))), pixels)
    elif kind == 'distribution':
        edges, counts = expected
        exact_edges, exact_counts = distribution_buckets(actual)
        assert exact_edges.tolist() == edges and exact_counts.tolist() == counts
        assert actual.range == [edges[0], edges[-1]]  # the data's range (empty end buckets are dropped)
        assert actual.weights.sum() == sum(counts)
    elif kind == 'text':
        if isinstance(expected, str):
            assert actual.data == expected
        else:  # a table: one markdown row per row, cells in order
            rows = actual.data.splitlines()[2:]
            assert rows == ['| ' + ' | '.join(c.replace('|', '\\|') for c in row) + ' |' for row in expected]
    elif kind == 'audio':
        actual = actual if isinstance(actual, list) else [actual]
        assert [clip.get().read() for clip in actual] == [clip for clip, _rate in expected]
        assert all(clip.storage['format'] == 'wav' for clip in actual)


@pytest.mark.slow
def test_every_plugin_reaches_aim_and_skips_are_reported(tmp_path, capsys):
    from pipelines import tf_to_aim

    logdir, repo, skipped = tmp_path / 'logs', tmp_path / 'repo', tmp_path / 'skipped.jsonl'
    tbx = write_tbx_plugins(str(logdir / 'tbx_run'))
    tf2 = write_tf2_plugins(str(logdir / 'tf2_run' / 'train'))
    assert tf_to_aim.run(['--logdir', str(logdir), '--repo', str(repo), '--skipped', str(skipped)]) == 0
    report = capsys.readouterr().out

    runs = _readback(str(repo))
    assert sorted(runs) == ['tbx_run', 'tf2_run']
    for run_name, log, context in (('tbx_run', tbx, None), ('tf2_run', tf2, 'train')):
        seqs = runs[run_name]['seqs']
        expected_keys = {(_AIM_KIND[kind], tag, json.dumps(_context(context))) for kind, tag, _ in log.points}
        assert set(seqs) == expected_keys, run_name
        for (kind, tag, step), (expected, wall_time) in log.points.items():
            value, time = seqs[(_AIM_KIND[kind], tag, json.dumps(_context(context)))][step]
            assert abs(time - wall_time) < 1e-3
            _check_point(kind, expected, value)
        # hparams are run attributes, not sequences
        assert runs[run_name]['attrs']['hparams'] == log.hparams
        assert runs[run_name]['attrs']['hparams_config'] == log.hparams_config
    assert isinstance(runs['tbx_run']['attrs']['hparams']['batchnorm'], bool)

    # skipped plugins: one dead letter per plugin and file, with the count; in the report's counter
    letters = [json.loads(line) for line in skipped.read_text().splitlines()]
    by_reason = {}
    for letter in letters:
        by_reason[letter['reason']] = by_reason.get(letter['reason'], 0) + letter['count']
    assert by_reason["unsupported plugin 'pr_curves'"] == tbx.skipped['pr_curves'] == 3
    assert by_reason[f"unsupported plugin '{CUSTOM_PLUGIN}'"] == tf2.skipped[CUSTOM_PLUGIN] == 3
    assert by_reason['hparams session_end_info is not converted'] == tbx.skipped['hparams']
    points_skipped = int(re.search(r'points skipped\s+([\d,]+)', report).group(1).replace(',', ''))
    assert points_skipped == sum(tbx.skipped.values()) + sum(tf2.skipped.values())
