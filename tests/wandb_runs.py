"""W&B runs written by the real ``wandb`` package (offline, no network) for the W&B source's tests, and
what was logged to them; plus an independent, minimal ``.wandb`` reader for comparisons.

``write_wandb_runs(root)`` writes, under ``root``:

* ``alpha`` (project ``vision``): 200 history rows with explicit ``_timestamp`` (scalars, a ``/`` in a
  key, nested keys, a string), images, histograms, a table, an audio clip (a WAV file), a list (not
  convertible), console output (``CONSOLE_WRITES``: both streams interleaved, ``\\r`` rewrites, a last
  line without a newline), config (nested, and updated later), tags, notes, group, job type, a summary
  value, system metrics sampled every 0.2 s;
* ``beta`` (``vision``): five rows, a line to each stream through W&B's terminal emulator
  (``console='wrap_emu'``: ``output`` records, not ``output_raw``), finished with exit code 1;
* ``resumed`` (``nlp``, id ``resumeme``): two processes with the same id, five rows each (W&B restarts
  ``_step`` at 0 offline);
* ``empty`` (``vision``): a config, nothing logged (no point: no Aim run, one dead letter);
* ``gamma`` (``vision``): a writer killed with SIGKILL after its rows reached the file (no exit record).

Each run is written by its own ``python`` process, as a user's training script would.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from typing import Any, Dict, List

T0 = 1_700_000_000.0
ALPHA_ROWS = 200
LONG_TEXT_STEP = 5
LONG_TEXT = ''.join(chr(0x41 + i % 26) for i in range(70_000))  # a record spanning three blocks
MEDIA_STEPS = (10, 20)
TABLE_STEP = 30
TABLE = {'columns': ['epoch', 'label', 'score'], 'data': [[1, 'cat', 0.5], [2, 'dog, big', 0.75]]}
HISTOGRAM = ([3, 0, 5, 2], [0.0, 0.5, 1.0, 1.5, 2.0])
CONFIG = {'lr': 0.01, 'batch': 32, 'opt': {'name': 'adam', 'betas': [0.9, 0.999]}, 'arch': 'resnet'}
KILLED_ROWS = 20
AUDIO_STEP = 15
WAV_RATE = 8000
# alpha's writes to its console, in order, each flushed (W&B records each as an ``output_raw`` piece)
CONSOLE_WRITES = (('stdout', 'epoch done\n'), ('stderr', 'second line\n'), ('stdout', 'no newline, then'),
                  ('stderr', ' stderr\n'), ('stdout', '\rprogress 1/3'), ('stdout', '\rprogress 2/3'),
                  ('stdout', '\rprogress 3/3'), ('stdout', '\n'), ('stderr', 'warning: last\n'),
                  ('stdout', 'tail without newline'))

_COMMON = textwrap.dedent('''
    import json, os, sys, time
    import numpy as np
    os.environ.update(WANDB_MODE='offline', WANDB_SILENT='true', WANDB_DIR=sys.argv[1])
    import wandb
    T0 = %r
    def pixels(step):
        rng = np.random.RandomState(step)
        return rng.randint(0, 256, size=(6 + step // 10, 7, 3), dtype=np.uint8)
''' % T0)

_ALPHA = _COMMON + textwrap.dedent('''
    run = wandb.init(project='vision', entity='team', name='alpha', group='g1', job_type='train',
                     notes='first try', tags=['baseline', 'cnn'], config=%(config)r,
                     settings=wandb.Settings(x_stats_sampling_interval=0.2))
    for i in range(%(rows)d):
        row = {'loss': 1.0 / (i + 1), 'acc/train': i * 0.025, 'nest': {'a': i, 'b': {'c': 2.5 * i}},
               '_timestamp': T0 + i * 0.5}
        if i == 0:
            row['phase'] = 'warmup'
        if i == 1:
            row['shape'] = [1, 2]
        if i == %(long_step)d:
            row['long'] = %(long)r
        if i in %(media)r:
            row['sample'] = wandb.Image(pixels(i), caption=f'step {i}')
            row['weights'] = wandb.Histogram(np_histogram=%(histogram)r)
        if i == %(table_step)d:
            row['preds'] = wandb.Table(columns=%(columns)r, data=%(data)r)
        if i == %(audio_step)d:
            row['clip'] = wandb.Audio(sys.argv[2], caption='beep')
        run.log(row, step=i)
    for stream, text in %(console)r:
        out = sys.stdout if stream == 'stdout' else sys.stderr
        out.write(text)
        out.flush()
    run.config.update({'late': 7})
    run.summary['best_acc'] = 0.93
    time.sleep(1.0)  # a few system metric samples
    run.finish()
''') % {'config': CONFIG, 'rows': ALPHA_ROWS, 'media': MEDIA_STEPS, 'histogram': HISTOGRAM,
        'table_step': TABLE_STEP, 'audio_step': AUDIO_STEP, 'console': CONSOLE_WRITES,
        'long_step': LONG_TEXT_STEP, 'long': LONG_TEXT, 'columns': TABLE['columns'], 'data': TABLE['data']}

_BETA = _COMMON + textwrap.dedent('''
    run = wandb.init(project='vision', name='beta',
                     settings=wandb.Settings(x_disable_stats=True, console='wrap_emu'))
    for i in range(5):
        run.log({'loss': 10.0 + i, '_timestamp': T0 + 100 + i})
    print('beta out')
    print('beta err', file=sys.stderr)
    run.finish(exit_code=1)
''')

_EMPTY = _COMMON + textwrap.dedent('''
    run = wandb.init(project='vision', name='empty', config={'a': 1}, settings=wandb.Settings(x_disable_stats=True))
    run.finish()
''')

_RESUMED = _COMMON + textwrap.dedent('''
    part = int(sys.argv[2])
    run = wandb.init(project='nlp', id='resumeme', resume='allow', name='resumed',
                     settings=wandb.Settings(x_disable_stats=True))
    for i in range(5):
        k = part * 5 + i
        run.log({'loss': 100.0 + k, '_timestamp': T0 + 200 + k})
    sys.stdout.write(f'part {part}, no newline')  # each process's last line: a line of its own
    sys.stdout.flush()
    run.finish()
''')

_KILLED = _COMMON + textwrap.dedent('''
    run = wandb.init(project='vision', name='gamma', settings=wandb.Settings(x_disable_stats=True))
    for i in range(%d):
        run.log({'loss': 50.0 + i, '_timestamp': T0 + 300 + i})
    print('logged', flush=True)
    time.sleep(600)
''' % KILLED_ROWS)


def _python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith('WANDB_')}
    return subprocess.Popen([sys.executable, '-c', script, *args], env=env, **kwargs)


def _wait(process: subprocess.Popen, what: str) -> None:
    if process.wait(timeout=180) != 0:
        raise RuntimeError(f'writing {what} with wandb failed (exit {process.returncode})')


def write_wandb_runs(root: str) -> Dict[str, Any]:
    """Write the runs under ``root`` (``root/<part>/wandb/...``); returns what was logged to each run."""
    wav = os.path.join(root, 'alpha', 'beep.wav')  # beside alpha's wandb/ directory
    os.makedirs(os.path.dirname(wav), exist_ok=True)
    with open(wav, 'wb') as stream:
        stream.write(wav_bytes())
    alpha = _python(_ALPHA, os.path.join(root, 'alpha'), wav)
    beta = _python(_BETA, os.path.join(root, 'beta'))
    empty = _python(_EMPTY, os.path.join(root, 'empty'))
    _wait(alpha, 'alpha')
    _wait(beta, 'beta')
    _wait(empty, 'empty')
    for part in (0, 1):  # one after the other: the second resumes the first
        _wait(_python(_RESUMED, os.path.join(root, f'resumed{part}'), str(part)), 'resumed')
    _write_killed(os.path.join(root, 'gamma'))
    return expected_runs()


def _write_killed(directory: str) -> None:
    """A writer killed (SIGKILL) once its rows are in its ``.wandb`` file: a bounded wait on the file."""
    writer = _python(_KILLED, directory, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert writer.stdout.readline().strip() == b'logged'
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = glob.glob(os.path.join(directory, 'wandb', '*run-*', 'run-*.wandb'))
            if files and sum(1 for r in reference_records(files[0]) if r.WhichOneof('record_type') == 'history') \
                    >= KILLED_ROWS:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError('the killed writer\'s rows never reached its .wandb file')
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    time.sleep(0)  # wandb-core notices its parent is gone and exits on its own


def expected_runs() -> Dict[str, Any]:
    alpha_metrics = {
        'loss': [(i, 1.0 / (i + 1), T0 + i * 0.5) for i in range(ALPHA_ROWS)],
        'acc/train': [(i, i * 0.025, T0 + i * 0.5) for i in range(ALPHA_ROWS)],
        'nest/a': [(i, float(i), T0 + i * 0.5) for i in range(ALPHA_ROWS)],
        'nest/b/c': [(i, 2.5 * i, T0 + i * 0.5) for i in range(ALPHA_ROWS)],
    }
    return {
        'alpha': {'experiment': 'vision', 'metrics': alpha_metrics, 'state': 'finished', 'tags': ['baseline', 'cnn'],
                  'description': 'first try', 'config': {**CONFIG, 'late': 7}, 'group': 'g1', 'job_type': 'train',
                  'entity': 'team', 'texts': {'phase': [(0, 'warmup')], 'long': [(LONG_TEXT_STEP, LONG_TEXT)]}},
        'beta': {'experiment': 'vision', 'state': 'failed',
                 'log_lines': [('beta err', 'stderr'), ('beta out', 'stdout')],
                 'metrics': {'loss': [(i, 10.0 + i, T0 + 100 + i) for i in range(5)]}},
        'resumed': {'experiment': 'nlp', 'state': 'finished', 'run_id': 'resumeme',
                    'log_lines': ['part 0, no newline', 'part 1, no newline'],
                    'metrics': {'loss': [(k, 100.0 + k, T0 + 200 + k) for k in range(10)]}},
        'gamma': {'experiment': 'vision', 'state': 'unfinished',
                  'metrics': {'loss': [(i, 50.0 + i, T0 + 300 + i) for i in range(KILLED_ROWS)]}},
    }


def wav_bytes() -> bytes:
    """The WAV file ``alpha`` logs as its audio clip: 0.1 s of a mono 16-bit saw wave."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, 'wb') as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(WAV_RATE)
        writer.writeframes(b''.join(struct.pack('<h', (i * 397) % 4000 - 2000) for i in range(WAV_RATE // 10)))
    return buffer.getvalue()


def console_lines() -> List[tuple]:
    """(text, streams) of the lines a terminal shows for ``CONSOLE_WRITES`` (both streams on one terminal,
    a line's text after its last ``\\r``), and how many texts a ``\\r`` overwrote: written out by hand."""
    return [('epoch done', 'stdout'), ('second line', 'stderr'), ('no newline, then stderr', 'stderr,stdout'),
            ('progress 3/3', 'stdout'), ('warning: last', 'stderr'), ('tail without newline', 'stdout')]


CONSOLE_OVERWRITTEN = 2  # 'progress 1/3', 'progress 2/3'


def alpha_pixels(step: int):
    """The pixels ``alpha`` logged as its image at ``step``."""
    import numpy as np

    rng = np.random.RandomState(step)
    return rng.randint(0, 256, size=(6 + step // 10, 7, 3), dtype=np.uint8)


def reference_records(path: str, offsets: bool = False) -> List[Any]:
    """Every record of an intact ``.wandb`` file, by the plainest reading of the format (no damage
    handling): an independent check of ``connectors.wandb_file``. With ``offsets``: (offset of the
    record's first chunk, offset past its last chunk, record)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, 'rb') as f:
        data = f.read()
    records, pending, offset, start = [], b'', 7, 7
    while offset + 7 <= len(data):
        if 32768 - offset % 32768 < 7:
            offset += 32768 - offset % 32768
            continue
        crc, length, kind = struct.unpack_from('<IHB', data, offset)
        body = data[offset + 7:offset + 7 + length]
        if len(body) < length or zlib.crc32(bytes([kind]) + body) != crc:
            break  # a file still being written ends here
        offset += 7 + length
        if kind in (1, 2):
            pending, start = body, offset - 7 - length
        else:
            pending += body
        if kind in (1, 4):
            record = wandb_internal_pb2.Record.FromString(pending)
            records.append((start, offset, record) if offsets else record)
    return records


def wandb_files(root: str) -> List[str]:
    return sorted(glob.glob(os.path.join(root, '*', 'wandb', '*run-*', 'run-*.wandb')))


if __name__ == '__main__':
    print(json.dumps(write_wandb_runs(sys.argv[1]))[:200])
