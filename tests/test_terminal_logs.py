"""Terminal output as Aim's terminal logs: W&B's console pieces → lines (``transforms.wandb_console``), and
the ``log_line`` kind written by both Aim write paths as Aim's own capture writes it (read back through
``run.get_terminal_logs()``, the call behind Aim's Logs tab). The whole W&B conversion, console included,
is in tests/test_wandb_to_aim.py."""
from __future__ import annotations

import pytest

from connectors.aim_version import WRITE_PATH_ENV
from transforms.wandb_console import ConsoleLines


def _lines(pieces):
    """``[(stream, text)]`` fed at times 0, 1, 2, ... → [(text, stream, wall time, overwritten)]."""
    console, lines = ConsoleLines(), []
    for offset, (stream, text) in enumerate(pieces):
        lines += console.add(stream, text, float(offset), 'f', offset)
    last = console.end()
    lines += [last] if last is not None else []
    return [(line.text, line.stream, line.wall_time, line.overwritten) for line in lines]


def test_pieces_become_the_lines_a_terminal_shows():
    assert _lines([('stdout', 'a'), ('stdout', '\n'), ('stderr', 'b\nc'), ('stdout', 'd\n')]) == [
        ('a', 'stdout', 0.0, 0), ('b', 'stderr', 2.0, 0), ('cd', 'stderr,stdout', 2.0, 0)]
    # a progress bar: the text after the line's last \r, dated by its first piece; the states it overwrote counted
    assert _lines([('stderr', '\r 10%'), ('stderr', '\r 50%'), ('stderr', '\r100%\n'), ('stdout', 'x\n')]) == [
        ('100%', 'stderr', 0.0, 2), ('x', 'stdout', 3.0, 0)]
    # \r\n endings overwrite nothing; an empty line is a line; nothing after the last newline: no line
    assert _lines([('stdout', 'one\r\n'), ('stdout', '\n'), ('stdout', 'two\r\n')]) == [
        ('one', 'stdout', 0.0, 0), ('', 'stdout', 1.0, 0), ('two', 'stdout', 2.0, 0)]
    # a last line without a newline is kept; a line cleared by \r (tqdm's leave=False) shows its blanks
    assert _lines([('stdout', 'tail')]) == [('tail', 'stdout', 0.0, 0)]
    assert _lines([('stdout', 'bar\r   \r'), ('stdout', '\n')]) == [('   ', 'stdout', 0.0, 1)]
    assert _lines([('stdout', '\r')]) == []


@pytest.mark.parametrize('write_path', ['auto', 'api'])
def test_log_lines_are_aims_terminal_logs_on_both_write_paths(tmp_path, monkeypatch, write_path):
    """Written in two chunks (a run's lines continue over chunks), on the storage path and through Aim's
    API: ``get_terminal_logs()`` gives every line at its step and time, an ``aim.log_line`` sequence named
    and typed as Aim's own capture writes it, each line's streams beside it."""
    from aim import Repo, Run
    from aim.ext.resource.log import LogLine

    from connectors.aim_sink import AimRunWriter, index_runs, open_repo
    from runmodel import LOG_LINE, TERMINAL_LOGS, RunData, RunSpec, Series

    monkeypatch.setenv(WRITE_PATH_ENV, write_path)
    lines = [('epoch 1', 'stdout'), ('warning', 'stderr'), ('', 'stdout'), ('done', 'stderr,stdout')]
    chunks = []
    for start in (0, 2):
        series = Series(LOG_LINE, TERMINAL_LOGS, {}, source='f')
        for step in range(start, start + 2):
            series.append(step, 1_700_000_000.0 + step, {'text': lines[step][0], 'stream': lines[step][1]}, step)
        chunks.append([series])
    data = RunData(RunSpec(identity='id-logs', name='logs', experiment='e'), stream=lambda _data: iter(chunks))
    repo_path = str(tmp_path / 'repo')
    open_repo(repo_path)
    written = AimRunWriter(repo_path).write(data)
    assert written.points == {LOG_LINE: 4}
    index_runs(repo_path, [written.hash], [written.props] if written.props is not None else [],
               {written.hash: written.meta_records} if written.meta_records is not None else {})

    def typed(meta):
        (ctx_id,) = meta.subtree(('traces',)).keys()
        return meta.collect(('traces', ctx_id, 'logs'))['dtype'], list(meta.collect(('typed_traces',)))

    own = Run(repo=repo_path, system_tracking_interval=None, capture_terminal_logs=False)
    own.track(LogLine('by Aim'), name='logs', step=0)  # as Aim's capture tracks a line
    own_typed = typed(own.meta_run_tree)
    own.close()

    repo = Repo.from_path(repo_path)
    run = repo.get_run(written.hash)
    steps, (values, _epochs, times) = run.get_terminal_logs().data.items_list()
    assert steps == [0, 1, 2, 3]
    assert [(v.data, v.storage['stream']) for v in values] == lines
    assert times == [1_700_000_000.0 + step for step in range(4)]
    assert typed(run.meta_run_tree) == own_typed == ('aim.log_line', ['sequence'])


def test_log_lines_into_mlflow_are_one_text_file(tmp_path):
    """A W&B source composes with the MLflow destination too: a run's terminal lines are the artifact
    ``console/logs.txt``, a line each in step order; written again, the file is present, not rewritten."""
    from mlflow import MlflowClient

    from connectors.mlflow_sink import MlflowRunWriter
    from runmodel import LOG_LINE, TERMINAL_LOGS, RunData, RunSpec, Series

    series = Series(LOG_LINE, TERMINAL_LOGS, {}, source='f')
    for step, (text, stream) in enumerate([('epoch 1', 'stdout'), ('', 'stdout'), ('warning', 'stderr')]):
        series.append(step, 1_700_000_000.0 + step, {'text': text, 'stream': stream}, step)
    uri = (tmp_path / 'mlruns').as_uri()  # a file store: no database to create
    writer = MlflowRunWriter(uri, artifact_location=str(tmp_path / 'artifacts'))
    spec = RunSpec(identity='id-logs', name='logs', experiment='e', creation_time=1_700_000_000.0,
                   end_time=1_700_000_002.0)
    skips = []
    first = writer.write(RunData(spec, [series]), skips.append)
    again = writer.write(RunData(spec, [series]), skips.append)
    assert (first.points, first.present, again.points, again.present) == ({LOG_LINE: 3}, 0, {LOG_LINE: 3}, 3)
    assert skips == []
    local = MlflowClient(uri).download_artifacts(first.run_id, 'console/logs.txt', str(tmp_path))
    with open(local, encoding='utf-8') as stream:
        assert stream.read() == 'epoch 1\n\nwarning\n'


def test_lines_of_wandbs_terminal_emulator():
    """``output`` records (W&B's ``redirect``/``wrap_emu`` console): whole lines; a leading ``\\r`` rewrites the
    stream's last line (a progress bar's new state, at that line's step)."""
    from transforms.wandb_console import emulated_lines

    assert emulated_lines('a\n\nb\n') == [(False, 'a'), (False, ''), (False, 'b')]
    assert emulated_lines('\r 50%\n') == [(True, ' 50%')]
    assert emulated_lines('\r100%\nnext\n') == [(True, '100%'), (False, 'next')]
    assert emulated_lines('win\r\n') == [(False, 'win')]
    assert emulated_lines('') == []


def test_emulated_rewrites_supersede_the_line_they_rewrite(tmp_path):
    """Through the run reader: ``output`` records (as W&B's emulator writes them online, where it flushes
    while a progress bar runs) in a small ``.wandb`` file; a rewrite goes to its stream's last line's step,
    and merging the run keeps the last state there, counting the earlier ones as superseded."""
    from wandb.proto import wandb_internal_pb2 as pb

    from connectors.event_files import EventFileSource
    from connectors.wandb_file import FILE_HEADER, FULL, chunk
    from runmodel import LOG_LINE, read_whole
    from transforms.wandb import wandb_run_data

    records = [pb.Record(run=pb.RunRecord(run_id='emu', project='p'))]
    for second, (stream, text) in enumerate([('stdout', 'epoch 1\n 10%\n'), ('stderr', 'warn\n'),
                                             ('stdout', '\r 60%\n'), ('stdout', '\r100%\ndone\n')]):
        output = pb.OutputRecord(line=text, output_type=getattr(pb.OutputRecord, stream.upper()))
        output.timestamp.seconds = 1_700_000_000 + second
        records.append(pb.Record(output=output))
    directory = tmp_path / 'wandb' / 'run-20240101_000000-emu'
    directory.mkdir(parents=True)
    (directory / 'run-emu.wandb').write_bytes(
        FILE_HEADER + b''.join(chunk(FULL, record.SerializeToString()) for record in records))
    skips = []
    whole, superseded = read_whole(wandb_run_data(EventFileSource(str(tmp_path)), 'emu',
                                                  ['wandb/run-20240101_000000-emu/run-emu.wandb']), skips.append)
    (logs,) = [series for series in whole.series if series.kind == LOG_LINE]
    assert list(logs.steps) == [0, 1, 2, 3] and superseded == 2
    assert [(v['text'], v['stream']) for v in logs.values] == [('epoch 1', 'stdout'), ('100%', 'stdout'),
                                                               ('warn', 'stderr'), ('done', 'stdout')]
    assert list(logs.wall_times) == [1_700_000_000.0, 1_700_000_003.0, 1_700_000_001.0, 1_700_000_003.0]
