"""TensorBoard logs with every plugin runferry converts (and some it skips), returning what was written.

* ``write_tbx_plugins``: tensorboardX's ``SummaryWriter`` as PyTorch users call it: ``add_image``,
  ``add_images``, ``add_histogram``, ``add_histogram_raw``, ``add_text``, ``add_hparams`` (what it
  writes, dated with the sample: ``_add_hparams_at``) and ``add_pr_curve`` (skipped by runferry).
  Audio is the ``Summary.Audio`` proto ``add_audio`` writes, handed to the same file writer:
  ``add_audio`` itself needs the ``soundfile`` package only to encode the WAV, which the standard
  ``wave`` module does here.
* ``write_tf2_plugins``: the events TF2's ``tf.summary.image/histogram/text/audio`` and the hparams
  API write: the same tensors, the plugin metadata from ``tensorboard.plugins.<plugin>.metadata`` on
  each tag's first event only, through the ``EventFileWriter`` the ``tensorboard`` package ships (no
  TensorFlow); plus a summary of a custom plugin (skipped by runferry).

Every event is dated from ``start_time`` on, one step every ``step_seconds`` (so a converted run
lasts minutes, as a real one would). Both return a ``PluginLog``: per ``(kind, tag, step)`` the
expected content and wall time, in forms that do not depend on runferry's decoding (pixel arrays,
bucket edges and counts, WAV bytes).
"""
from __future__ import annotations

import dataclasses
import io
import os
import wave
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ['PluginLog', 'write_tbx_plugins', 'write_tf2_plugins', 'wav_bytes', 'png_bytes', 'sample_image',
           'CUSTOM_PLUGIN']

CUSTOM_PLUGIN = 'my_custom_plugin'


@dataclasses.dataclass
class PluginLog:
    """What a writer wrote into one directory (``context`` is a subdirectory, or None)."""
    # (kind, tag, step) -> (expected, wall_time). Expected by kind:
    #   image: [(pixels ndarray, format)], distribution: (edges, counts), text: str,
    #   audio: [(wav bytes, rate)]
    points: Dict[Tuple[str, str, int], Tuple[Any, float]] = dataclasses.field(default_factory=dict)
    hparams: Dict[str, Any] = dataclasses.field(default_factory=dict)
    hparams_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # the subdirectory the hparams went to (tensorboardX's add_hparams writes a sub-run), None: here
    hparams_context: Optional[str] = None
    # plugin name -> number of points written that runferry skips
    skipped: Dict[str, int] = dataclasses.field(default_factory=dict)


def sample_image(step: int, height: int = 6, width: int = 5, channels: int = 3, salt: int = 0) -> np.ndarray:
    """A deterministic uint8 image that differs by step (and salt)."""
    grid = np.arange(height * width * channels, dtype=np.int64).reshape(height, width, channels)
    return ((grid * 7 + step * 31 + salt * 13) % 256).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(out, format='PNG')
    return out.getvalue()


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of float samples in [-1, 1], shape (frames, channels), as TF's encode_wav writes."""
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype('<i2')
    out = io.BytesIO()
    with wave.open(out, 'wb') as writer:
        writer.setnchannels(samples.shape[1])
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm.tobytes())
    return out.getvalue()


def _tone(step: int, frames: int = 400, rate: int = 8000, channels: int = 1) -> np.ndarray:
    t = np.arange(frames) / rate
    wave_ = 0.5 * np.sin(2 * np.pi * (220 + 20 * step) * t)
    return np.stack([wave_] * channels, axis=1)


def _add_hparams_at(writer, hparams: Dict[str, Any], metrics: Dict[str, float], name: str, wall_time: float) -> None:
    """What tensorboardX's ``add_hparams(hparams, metrics, name=name)`` writes (a sub-run ``name`` with the
    hparams plugin's three summaries and each metric as a scalar), dated ``wall_time``: ``add_hparams``
    itself takes no wall time and dates its events when it runs, years after a sample dated 2023."""
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams as hparams_summaries

    with SummaryWriter(os.path.join(writer.file_writer.get_logdir(), name), flush_secs=3600) as hparams_writer:
        for summary in hparams_summaries(hparams, metrics):
            hparams_writer.file_writer.add_summary(summary, walltime=wall_time)
        for tag, value in metrics.items():
            hparams_writer.add_scalar(tag, value, walltime=wall_time)


def write_tbx_plugins(directory: str, steps: int = 3, start_time: float = 1_700_000_000.0,
                      step_seconds: float = 60.0) -> PluginLog:
    from PIL import Image as PILImage
    from tensorboardX import SummaryWriter
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.summary import image as tbx_image

    os.makedirs(directory, exist_ok=True)
    log = PluginLog()
    writer = SummaryWriter(directory, flush_secs=3600)
    rate = 8000
    for step in range(steps):
        wall_time = start_time + step * step_seconds
        pixels = sample_image(step)
        writer.add_image('sample/image', pixels, step, walltime=wall_time, dataformats='HWC')
        log.points[('image', 'sample/image', step)] = ([(pixels, 'png')], wall_time)

        batch = np.stack([sample_image(step, salt=i) for i in range(4)])
        writer.add_images('sample/batch', batch, step, walltime=wall_time, dataformats='NHWC')
        # add_images writes one grid image: what it encoded is what tensorboardX.summary.image makes
        grid = tbx_image('sample/batch', batch, dataformats='NHWC').value[0].image.encoded_image_string
        log.points[('image', 'sample/batch', step)] = (
            [(np.asarray(PILImage.open(io.BytesIO(grid)).convert('RGB')), 'png')], wall_time)

        values = np.random.default_rng(step).normal(step, 1.0, size=500)
        writer.add_histogram('weights/normal', values, step, bins=7, walltime=wall_time)
        counts, edges = np.histogram(values, bins=7)
        log.points[('distribution', 'weights/normal', step)] = ((edges.tolist(), counts.astype(float).tolist()),
                                                                wall_time)

        # non-uniform buckets, as TF1 writes them: right limits, a leading empty bucket, min and max
        limits = [-1.0, 0.5, 2.0 + step, 10.0 + step]
        bucket_counts = [0.0, 3.0, 5.0 + step, 2.0]
        writer.add_histogram_raw('weights/raw', min=-1.0, max=7.5 + step, num=int(sum(bucket_counts)), sum=1.0,
                                 sum_squares=1.0, bucket_limits=limits, bucket_counts=bucket_counts,
                                 global_step=step, walltime=wall_time)
        log.points[('distribution', 'weights/raw', step)] = (([-1.0, 0.5, 2.0 + step, 7.5 + step],
                                                              [3.0, 5.0 + step, 2.0]), wall_time)

        text = f'step **{step}**: héllo | world\nsecond line'
        writer.add_text('notes', text, step, walltime=wall_time)
        log.points[('text', 'notes/text_summary', step)] = (text, wall_time)

        clip = wav_bytes(_tone(step, rate=rate), rate)
        audio = Summary.Audio(sample_rate=rate, num_channels=1, length_frames=400, encoded_audio_string=clip,
                              content_type='audio/wav')
        writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag='voice', audio=audio)]),
                                              step, wall_time)
        log.points[('audio', 'voice', step)] = ([(clip, rate)], wall_time)

        labels = np.random.default_rng(step).integers(0, 2, size=50)
        writer.add_pr_curve('pr', labels, np.random.default_rng(step + 1).random(50), step, walltime=wall_time)
        log.skipped['pr_curves'] = log.skipped.get('pr_curves', 0) + 1

    hparams = {'lr': 0.01, 'optimizer': 'adam', 'batchnorm': True, 'layers': 3}
    _add_hparams_at(writer, hparams, {'hparam/accuracy': 0.9}, 'hparams', start_time + steps * step_seconds)
    log.hparams = {'lr': 0.01, 'optimizer': 'adam', 'batchnorm': True, 'layers': 3.0}  # numbers as float64
    log.hparams_config = {
        'hparam_infos': [{'name': 'lr', 'type': 'DATA_TYPE_FLOAT64'},
                         {'name': 'optimizer', 'type': 'DATA_TYPE_STRING'},
                         {'name': 'batchnorm', 'type': 'DATA_TYPE_BOOL'},
                         {'name': 'layers', 'type': 'DATA_TYPE_FLOAT64'}],
        'metric_infos': [{'name': {'tag': 'hparam/accuracy'}}],
    }
    log.hparams_context = 'hparams'
    log.skipped['hparams'] = 1  # session_end_info
    writer.close()
    return log


def write_tf2_plugins(directory: str, steps: int = 3, start_time: float = 1_700_000_000.0,
                      step_seconds: float = 90.0) -> PluginLog:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.audio import metadata as audio_metadata
    from tensorboard.plugins.hparams import summary_v2 as hparams_summary
    from tensorboard.plugins.histogram import summary_v2 as histogram_summary
    from tensorboard.plugins.image import metadata as image_metadata
    from tensorboard.plugins.text import summary_v2 as text_summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    os.makedirs(directory, exist_ok=True)
    writer = EventFileWriter(directory, flush_secs=3600)
    log = PluginLog()
    described = set()

    def write(value: summary_pb2.Summary.Value, step: int, wall_time: float) -> None:
        if value.tag in described:  # tf.summary writes a tag's metadata with its first event only
            value.ClearField('metadata')
        described.add(value.tag)
        writer.add_event(event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=[value])))

    rate = 16000
    for step in range(steps):
        wall_time = start_time + step * step_seconds
        # tf.summary.image: [width, height, png...] with the images plugin metadata
        images = [sample_image(step, 4, 3, 3, salt=i) for i in range(2)] + [sample_image(step, 4, 3, 3, salt=9)[:, :, :1]]
        tensor = tensor_util.make_tensor_proto(
            np.array([b'3', b'4'] + [png_bytes(p) for p in images], dtype=object))
        write(summary_pb2.Summary.Value(tag='inputs', tensor=tensor,
                                        metadata=image_metadata.create_summary_metadata(None, None)),
              step, wall_time)
        log.points[('image', 'inputs', step)] = ([(p if p.shape[2] == 3 else p[:, :, 0], 'png') for p in images],
                                                 wall_time)

        data = np.random.default_rng(100 + step).uniform(-step - 1, step + 1, size=300)
        value = histogram_summary.histogram_pb('layer/kernel', data, buckets=12).value[0]
        write(value, step, wall_time)
        buckets = tensor_util.make_ndarray(value.tensor)  # k x 3: left edge, right edge, count
        log.points[('distribution', 'layer/kernel', step)] = (
            (buckets[:, 0].tolist() + [float(buckets[-1, 1])], buckets[:, 2].tolist()), wall_time)

        text = f'# Step {step}\n\nsome *markdown*'
        write(text_summary.text_pb('summary/markdown', text).value[0], step, wall_time)
        log.points[('text', 'summary/markdown', step)] = (text, wall_time)
        table = np.array([['name', 'value'], ['loss', f'{0.5 / (step + 1):.3f}'], ['pipe', 'a|b']])
        write(text_summary.text_pb('summary/table', table).value[0], step, wall_time)
        log.points[('text', 'summary/table', step)] = (table, wall_time)

        clips = [wav_bytes(_tone(step + i, frames=320, rate=rate, channels=2), rate) for i in range(2)]
        tensor = tensor_util.make_tensor_proto(np.array([[clip, b''] for clip in clips], dtype=object))
        write(summary_pb2.Summary.Value(
            tag='speech', tensor=tensor,
            metadata=audio_metadata.create_summary_metadata(None, None, audio_metadata.Encoding.Value('WAV'))),
            step, wall_time)
        log.points[('audio', 'speech', step)] = ([(clip, rate) for clip in clips], wall_time)

        custom = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=CUSTOM_PLUGIN, content=b'\x01'))
        write(summary_pb2.Summary.Value(tag='custom/thing', metadata=custom,
                                        tensor=tensor_util.make_tensor_proto(np.float32([1, 2, step]))),
              step, wall_time)
        log.skipped[CUSTOM_PLUGIN] = log.skipped.get(CUSTOM_PLUGIN, 0) + 1

    # what hp.hparams_config / hp.hparams write (tensorboard.plugins.hparams.api imports TF for Keras,
    # summary_v2 does not); tf.summary writes these raw summaries at step 0
    hps = hparams_summary
    lr, units = hps.HParam('lr', hps.RealInterval(1e-4, 1e-1)), hps.HParam('units', hps.Discrete([16, 32]))
    config = hps.hparams_config_pb([lr, units], [hps.Metric('accuracy')], time_created_secs=123.0)
    session = hps.hparams_pb({lr: 0.003, units: 32, 'activation': 'relu'}, trial_id='trial-7',
                             start_time_secs=int(start_time))
    for summary in (config, session):
        writer.add_event(event_pb2.Event(wall_time=start_time, step=0, summary=summary))
    log.hparams = {'lr': 0.003, 'units': 32.0, 'activation': 'relu'}
    log.hparams_config = {
        'hparam_infos': [{'name': 'lr', 'type': 'DATA_TYPE_FLOAT64',
                          'domain_interval': {'min_value': 1e-4, 'max_value': 1e-1}},
                         {'name': 'units', 'type': 'DATA_TYPE_FLOAT64',
                          'domain_discrete': [16.0, 32.0]}],
        'metric_infos': [{'name': {'tag': 'accuracy'}}],
        'time_created_secs': 123.0,
    }
    writer.close()
    return log
