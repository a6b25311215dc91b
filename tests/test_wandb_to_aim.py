"""``python -m pipelines.wandb_to_aim`` end to end: runs written by the real ``wandb`` package (offline), converted
by the real command with two worker processes (a re-run and a dry run in the launcher's own process, as
any directory of under 100 runs is converted by default), read back through Aim's SDK against what was logged."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from aim import Repo
from aim.storage.context import Context

from connectors.aim_objects import distribution_buckets
from tests.readback import read_metrics, read_runs
from tests.wandb_runs import (AUDIO_STEP, CONSOLE_OVERWRITTEN, HISTOGRAM, MEDIA_STEPS, TABLE, TABLE_STEP,
                              alpha_pixels, console_lines, reference_records, wandb_files, wav_bytes)
from transforms.wandb import SYSTEM_CONTEXT
from transforms.wandb_console import OVERWRITTEN_REASON

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_CONTEXT = json.dumps({})
SYSTEM = json.dumps(SYSTEM_CONTEXT, sort_keys=True)


def wandb_to_aim(tmp_path, *args, env=None, workers=2):
    argv = [sys.executable, '-m', 'pipelines.wandb_to_aim', *args, '--skipped', str(tmp_path / 'skipped.jsonl'),
            '--report', str(tmp_path / 'report.json')]
    if workers > 1:
        argv += ['--direct_num_workers', str(workers), '--direct_running_mode', 'multi_processing']
    return subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=600)


def _run(repo: Repo, name: str):
    return next(run for run in repo.iter_runs() if run.name == name)


def _objects(run, getter: str, name: str, context=None):
    sequence = getattr(run, getter)(name, Context(context or {}))
    assert sequence is not None, (getter, name)
    steps, (values, _epochs, _times) = sequence.data.items_list()
    return steps, values


def _stats_points(root: str):
    """{metric name: [(step, value, time)]} of alpha's system metrics, read from its file directly."""
    path = next(p for p in wandb_files(root) if '/alpha/' in p)
    points = {}
    samples = [r.stats for r in reference_records(path) if r.WhichOneof('record_type') == 'stats']
    for step, sample in enumerate(samples):
        when = sample.timestamp.seconds + sample.timestamp.nanos / 1e9
        for item in sample.item:
            points.setdefault(item.key, []).append((step, float(json.loads(item.value_json)), when))
    return points


def _console_pieces(root: str):
    """(text, wall time) of alpha's console pieces (``output_raw`` records), read from its file directly."""
    path = next(p for p in wandb_files(root) if '/alpha/' in p)
    return [(r.output_raw.line, r.output_raw.timestamp.seconds + r.output_raw.timestamp.nanos / 1e9)
            for r in reference_records(path) if r.WhichOneof('record_type') == 'output_raw']


def check_terminal_logs(run, root: str) -> None:
    """alpha's console output is Aim's terminal logs (its UI's Logs tab): the lines a terminal showed,
    stdout and stderr together in the order written, stepped 0, 1, ...; each line dated by its first piece."""
    logs = run.get_terminal_logs()
    assert logs is not None
    steps, (lines, _epochs, times) = logs.data.items_list()
    assert [line.get_typename() for line in lines] == ['aim.log_line'] * len(lines)
    assert steps == list(range(len(console_lines())))
    assert [(line.data, line.storage['stream']) for line in lines] == console_lines()
    pieces = _console_pieces(root)
    assert times[0] == pytest.approx(pieces[0][1], abs=1e-3)  # 'epoch done'
    progress_first = next(when for text, when in pieces if text == '\rprogress 1/3')
    assert times[3] == pytest.approx(progress_first, abs=1e-3)  # the progress line: its first, overwritten piece
    assert times == sorted(times)
    assert run.get_text_sequence('console', Context({'stream': 'stdout'})) is None  # no longer a text sequence


def check_converted(repo_path: str, root: str, expected: dict, names) -> None:
    """Every run of ``names``, read back through Aim's SDK, holds exactly what was logged."""
    runs = read_runs(repo_path)
    assert sorted(runs) == sorted(names)
    metrics = read_metrics(repo_path)
    for name in names:
        want, run = expected[name], runs[name]
        attributes = run['attributes']
        assert run['experiment'] == want['experiment'], name
        assert attributes['wandb_state'] == want['state'], name
        assert attributes['wandb_project'] == want['experiment']
        assert run['end_time'] >= run['creation_time']
        for metric, points in want['metrics'].items():
            got = metrics[(name, NO_CONTEXT, metric)]
            assert [s for s, _, _ in got] == [s for s, _, _ in points], (name, metric)
            assert [v for _, v, _ in got] == [v for _, v, _ in points], (name, metric)
            assert all(abs(a[2] - b[2]) < 1e-3 for a, b in zip(got, points)), (name, metric)
        own = {key[2] for key in metrics if key[0] == name and key[1] == NO_CONTEXT}
        assert own == set(want['metrics']), name  # nothing invented (_step, _timestamp, _runtime are axes)
    if 'resumed' in names:  # its files' lines numbered on, each file's unended last line kept as a line
        logs = _run(Repo.from_path(repo_path), 'resumed').get_terminal_logs()
        steps, (lines, _, _) = logs.data.items_list()
        assert (steps, [line.data for line in lines]) == ([0, 1], expected['resumed']['log_lines'])
    if 'beta' in names:  # W&B's emulator wrote each stream's lines in one record (its order: W&B's)
        logs = _run(Repo.from_path(repo_path), 'beta').get_terminal_logs()
        steps, (lines, _, _) = logs.data.items_list()
        assert steps == [0, 1]
        assert sorted((line.data, line.storage['stream']) for line in lines) == expected['beta']['log_lines']
    if 'alpha' not in names:
        return
    alpha = runs['alpha']['attributes']
    want = expected['alpha']
    assert {k: alpha['hparams'][k] for k in want['config']} == want['config']
    assert (alpha['wandb_entity'], alpha['wandb_group'], alpha['wandb_job_type']) == ('team', 'g1', 'train')
    assert alpha['wandb_summary']['best_acc'] == 0.93 and alpha['wandb_summary']['loss'] == 1.0 / 200
    assert expected['resumed']['run_id'] == runs['resumed']['attributes']['wandb_run_id']
    assert runs['beta']['attributes']['wandb_exit_code'] == 1
    # system metrics: every sample W&B wrote, at its index, with its time
    system = {key[2]: points for key, points in metrics.items() if key[0] == 'alpha' and key[1] == SYSTEM}
    stats = _stats_points(root)
    assert len(stats['cpu']) >= 3 and sorted(system) == sorted(stats)
    for metric, points in stats.items():
        got = system[metric]
        assert [(s, v) for s, v, _ in got] == [(s, v) for s, v, _ in points], metric
        assert all(abs(a[2] - b[2]) < 1e-3 for a, b in zip(got, points)), metric
    repo = Repo.from_path(repo_path)
    run = _run(repo, 'alpha')
    assert sorted(run.props.tags, key=str) == sorted(want['tags']) or sorted(t.name for t in run.props.tags) == \
        sorted(want['tags'])
    assert run.description == want['description']
    steps, images = _objects(run, 'get_image_sequence', 'sample')
    assert steps == list(MEDIA_STEPS)
    for step, image in zip(steps, images):
        assert np.array_equal(np.asarray(image.to_pil_image().convert('RGB')), alpha_pixels(step)), step
        assert image.caption == f'step {step}'
    steps, distributions = _objects(run, 'get_distribution_sequence', 'weights')
    assert steps == list(MEDIA_STEPS)
    for distribution in distributions:
        edges, counts = distribution_buckets(distribution)
        assert list(edges) == HISTOGRAM[1] and list(counts) == HISTOGRAM[0]
    steps, texts = _objects(run, 'get_text_sequence', 'preds')
    assert steps == [TABLE_STEP]
    assert texts[0].data == 'epoch,label,score\n1,cat,0.5\n2,"dog, big",0.75\n'
    assert TABLE['data'][1][1] == 'dog, big'
    for name, points in want['texts'].items():
        steps, texts = _objects(run, 'get_text_sequence', name)
        assert [(s, t.data) for s, t in zip(steps, texts)] == points, name
    steps, clips = _objects(run, 'get_audio_sequence', 'clip')
    assert steps == [AUDIO_STEP]
    assert clips[0].get().read() == wav_bytes()
    assert clips[0].json() == {'caption': 'beep', 'format': 'wav'}  # (Aim keeps no rate: the WAV holds it)
    check_terminal_logs(run, root)


def _counters(tmp_path) -> dict:
    report = json.load(open(tmp_path / 'report.json'))
    return report.get('counters', report)


@pytest.mark.slow
def test_wandb_runs_into_aim_then_again_from_s3(wandb_runs, s3_server, s3fs_client, tmp_path):
    """Scalars, nested keys, strings, images, histograms, a table, console lines, system metrics, config,
    summary, tags, notes; a failed run, a resumed run (two files, steps restarted by W&B), a killed run;
    W&B's latest-run links passed over; one dead letter for the list value; the report adds up.
    Then the same runs from s3:// (moto), project ``vision`` only, into the same repo, in one process: its
    three runs are rewritten as they were (no run, no point twice), the ``nlp`` run is left as it was."""
    root, expected = wandb_runs
    repo = str(tmp_path / 'aim')
    result = wandb_to_aim(tmp_path, '--wandb-dir', root, '--repo', repo)
    assert result.returncode == 0, result.stderr[-3000:]
    check_converted(repo, root, expected, ['alpha', 'beta', 'resumed', 'gamma'])
    skipped = sorted((s['kind'], s['reason'], s['count']) for s in map(json.loads, open(tmp_path / 'skipped.jsonl')))
    assert skipped == [('point', OVERWRITTEN_REASON, CONSOLE_OVERWRITTEN),
                       ('point', "history key 'shape': list value", 1),
                       ('run', 'run holds no point (no history row, system metric or console line): not created, '
                               'its config and summary not written', 0)]
    counters = _counters(tmp_path)
    assert counters['runs_written'] == 4
    assert counters['points_read'] == counters['points_written'] + counters['points_skipped']
    assert counters['points_skipped'] == 1 + CONSOLE_OVERWRITTEN
    # console lines (alpha's, beta's two, resumed's two, gamma's 'logged'): each written; the texts a \r
    # overwrote read and skipped
    assert counters['points_written:log_line'] == len(console_lines()) + 5
    assert counters['points_read:log_line'] == len(console_lines()) + 5 + CONSOLE_OVERWRITTEN
    assert counters['points_written:audio'] == counters['points_read:audio'] == 1
    assert 'log_line' in result.stdout and 'console text overwritten by a carriage return' in result.stdout

    bucket = f'runferry-{uuid.uuid4().hex[:12]}'
    s3fs_client.mkdir(bucket)
    s3fs_client.put(root, f'{bucket}/wandb', recursive=True)
    result = wandb_to_aim(tmp_path, '--wandb-dir', f's3://{bucket}/wandb', '--repo', repo, '--wandb-project', 'vision',
                          env=s3_server.env, workers=1)
    assert result.returncode == 0, result.stderr[-3000:]
    check_converted(repo, root, expected, ['alpha', 'beta', 'resumed', 'gamma'])
    counters = _counters(tmp_path)
    assert counters['runs_written'] == 3 and counters['runs_filtered'] == 1  # and 'empty', again not created


@pytest.mark.slow
def test_resumed_run_from_gcs(wandb_runs, gcs_server, gcsfs_client, tmp_path):
    """gs:// through the emulator, two workers, project ``nlp`` only: the resumed run's two files, ordered
    by their run records read from GCS, are one run holding all ten steps."""
    root, expected = wandb_runs
    bucket = f'runferry-{uuid.uuid4().hex[:12]}'
    gcsfs_client.mkdir(bucket)
    gcsfs_client.put(root, f'{bucket}/wandb', recursive=True)
    repo = str(tmp_path / 'aim')
    result = wandb_to_aim(tmp_path, '--wandb-dir', f'gs://{bucket}/wandb', '--repo', repo, '--wandb-project', 'nlp',
                          '--storage-options', '{"token": "anon"}', env=gcs_server.env)
    assert result.returncode == 0, result.stderr[-3000:]
    check_converted(repo, root, expected, ['resumed'])
    assert _counters(tmp_path)['runs_filtered'] == 4


@pytest.mark.slow
def test_dry_run_and_an_empty_directory(wandb_runs, tmp_path):
    root, _ = wandb_runs
    result = wandb_to_aim(tmp_path, '--wandb-dir', root, '--repo', str(tmp_path / 'aim'), '--dry-run', workers=1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '5 runs, 6 .wandb files' in result.stdout and 'run resumeme (resumed: its files merge)' in result.stdout
    assert not os.path.exists(tmp_path / 'aim' / '.aim')
    empty = tmp_path / 'empty'
    empty.mkdir()
    result = wandb_to_aim(tmp_path, '--wandb-dir', str(empty), '--repo', str(tmp_path / 'aim'), workers=1)
    assert result.returncode == 2 and 'holds no W&B run files' in result.stderr


def test_flags():
    """--wandb-project, not --project: Beam's (and Dataflow's launcher's) --project is the Google Cloud project,
    and passes through to Beam; bad values are one line each, before any work."""
    from pipelines import wandb_to_aim
    from pipelines.common import UsageError

    args, pipeline_args = wandb_to_aim.parse(['--wandb-dir', 's3://b/wandb', '--repo', '/mnt/aim', '--project=p',
                                              '--wandb-project', 'vision', '--wandb_project=nlp'])
    assert pipeline_args == ['--project=p']
    assert (args.wandb_dir, args.wandb_projects) == ('s3://b/wandb', ['vision', 'nlp'])
    for argv, message in ((['--wandb-dir', ' '], '--wandb-dir is empty'),
                          (['--wandb-dir', '/w', '--wandb-project', ''], '--wandb-project is empty'),
                          (['--wandb-dir', '/w', '--storage-options', '[1]'], '--storage-options')):
        with pytest.raises(UsageError) as error:
            wandb_to_aim.parse([*argv, '--repo', '/mnt/aim'])
        assert message in str(error.value)
