"""What both pipelines share: flag errors, Beam options, dead letters, the end-of-run report."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, List, Optional

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.runs import NAMESPACE
from transforms.series import Skip

__all__ = ['UsageError', 'fail_usage', 'pipeline_options', 'default_skipped_path', 'WriteSkipped',
           'read_counters', 'check_repo_writable', 'parse_json_flag', 'watch_progress', 'finish',
           'SKIP_COUNTERS', 'finish_outputs', 'exit_program']

# Counters that, when not zero, mean something read was not written.
SKIP_COUNTERS = ('files_skipped', 'files_ignored', 'records_skipped', 'points_skipped', 'runs_failed',
                 'runs_skipped', 'artifacts_skipped', 'tags_skipped')


class UsageError(Exception):
    """A bad flag or value: reported as one line, exit status 2, before any work starts."""


def exit_program(status: int) -> None:
    """Exit a finished command without Python's final garbage collection of every Beam and Aim object
    (~0.7 s on this machine, measured): ``gc.freeze`` moves them out of the collector's reach. Nothing
    of ours depends on that collection: repos, containers and files are closed explicitly or by
    Aim's at-exit cleanup, which still runs. For programs only; a process that goes on would leak."""
    import gc

    gc.freeze()
    sys.exit(status)


def fail_usage(prog: str, error: Exception) -> None:
    print(f'{prog}: error: {error}', file=sys.stderr)
    raise SystemExit(2)


def parse_json_flag(flag: str, text: Optional[str]) -> Dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f'{flag} is not valid JSON ({error.msg} at column {error.colno}): {text}') from None
    if not isinstance(value, dict):
        raise UsageError(f'{flag} must be a JSON object, got: {text}')
    return value


# From this many runs on, the DirectRunner gets one worker process per core (see pipeline_options).
PARALLEL_FROM_RUNS = 100


def pipeline_options(pipeline_args: List[str], runs: int = 0) -> PipelineOptions:
    """Beam options. On the DirectRunner, unless a ``--direct_*`` flag says otherwise, a conversion of
    ``PARALLEL_FROM_RUNS`` runs or more gets one worker process per core; a smaller one runs in the
    launcher's process. Measured on 2 cores (benchmarks/RESULTS.md, runs of ~4,000 points): worker
    processes cost ~5 s to start (each imports Beam and Aim) and nearly halve the per-run time, so they
    win from somewhere between 40 and 80 runs (10 runs: 6.7 s vs 1.9 s in one process; 50 runs: 6.6 to
    10.7 s vs 7.5 to 8.9 s, depending on the run; 200 runs: 17 s vs 23 s).
    Threads do not help: decoding holds the GIL. The workers' own INFO logging is turned down to
    errors (it would otherwise flood the terminal)."""
    args = list(pipeline_args)
    if _is_direct_runner(args) and runs >= PARALLEL_FROM_RUNS and not any(
            a.startswith(('--direct_running_mode', '--direct_num_workers')) for a in args):
        args += ['--direct_running_mode=multi_processing', f'--direct_num_workers={os.cpu_count() or 1}']
        if not any(a.startswith('--default_sdk_harness_log_level') for a in args):
            args.append('--default_sdk_harness_log_level=ERROR')
    return PipelineOptions(args, save_main_session=False)


def default_skipped_path(repo: str) -> str:
    """Dead letters go beside a local repo (``REPO.skipped.jsonl``), or in the working directory."""
    if repo.startswith('aim://'):
        return os.path.abspath('runferry-skipped.jsonl')
    return os.path.abspath(repo.rstrip('/')) + '.skipped.jsonl'


# What a conversion writes in a local repo's .aim: run data, run locks, the index, the SQLite props
# (SQLite also needs its directory, for its journal). Each must be writable, or creatable in its parent.
_REPO_WRITES = ('.', 'run_metadata.sqlite', 'locks', 'meta', 'meta/chunks', 'meta/index', 'seqs', 'seqs/chunks')


def check_repo_writable(repo: str, early=None) -> None:
    """A local repo must be creatable/writable; a remote one must answer (checked by the sink module).
    ``early`` (a ``pipelines.early_repo.EarlyRepo``) is a repo already being created for this command:
    if it is this one and it was created, it is taken as is.

    A new local repo is created atomically (``pipelines.early_repo.create_repo``), so conversions
    racing to create it share one repo. An existing one is opened without taking any lock (not the
    index's: another conversion, or ``aim up``, may hold it), and every part a conversion writes is
    checked writable here, before any work (``_unwritable_part``)."""
    if repo.startswith('aim://'):
        from connectors.aim_remote import check_server
        check_server(repo)
        return
    path = os.path.abspath(repo)
    try:
        built_early = early is not None and early.claim(repo)
    except OSError as error:
        raise UsageError(f'--repo {repo} cannot be created: {error}') from None
    if not built_early:
        _check_creatable(repo, path)
        _create_or_open(repo, path)
    unwritable = _unwritable_part(os.path.join(path, '.aim'))
    if unwritable:
        raise UsageError(f'--repo {repo} is not writable: {unwritable} is read-only')


def _check_creatable(repo: str, path: str) -> None:
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise UsageError(f'--repo {repo} is not writable ({probe} is not a writable directory)')


def _create_or_open(repo: str, path: str) -> None:
    """Create the repo (atomically) if it has no ``.aim`` yet; then open it as Aim does, with no lock."""
    from connectors.aim_sink import open_repo
    from pipelines.early_repo import create_repo

    if not os.path.lexists(os.path.join(path, '.aim')):
        try:
            create_repo(path)  # created here, once, so that workers never race to initialize it
        except Exception as error:
            raise UsageError(f'--repo {repo} cannot be created as an Aim repo: {error}') from None
    try:
        open_repo(repo, create=False)
    except Exception as error:
        raise UsageError(f'--repo {repo} cannot be opened as an Aim repo: {error}') from None


def _unwritable_part(aim_dir: str) -> Optional[str]:
    """The first part of the repo a conversion writes that it could not write, or None. ``os.access``
    tells, even for root: a read-only mount (EROFS) and an immutable file (``chattr +i``, EPERM) are
    refused to root as to anyone; for others, permission bits too."""
    for part in _REPO_WRITES:
        target = os.path.normpath(os.path.join(aim_dir, part))
        while not os.path.lexists(target):
            target = os.path.dirname(target)  # created when first written: its directory must be writable
        mode = os.W_OK | (os.X_OK if os.path.isdir(target) else 0)
        if not os.access(target, mode):
            return target
    return None


class WriteSkipped(beam.DoFn):
    """All dead letters (one list) → one JSON-lines file, sorted so the same input gives the same file."""

    def __init__(self, path: str):
        self.path = path

    def process(self, skips: List[Skip]):
        import fsspec

        lines = sorted(skip.to_json() for skip in skips)
        with fsspec.open(self.path, 'w') as out:
            for line in lines:
                out.write(line + '\n')
        yield len(lines)


def read_counters(result) -> Dict[str, int]:
    """The pipeline's runferry counters, committed (or attempted, where a runner has no committed)."""
    counters: Dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for counter in query['counters']:
        name = counter.key.metric.name
        try:
            value = counter.committed
        except Exception:
            value = None
        if value is None:
            value = counter.attempted
        counters[name] = counters.get(name, 0) + (value or 0)
    return counters


def _is_direct_runner(pipeline_args: List[str]) -> bool:
    runner = PipelineOptions(pipeline_args).get_all_options().get('runner')
    return runner in (None, 'DirectRunner', 'direct', 'PrismRunner', 'prism') or 'Direct' in str(runner)


@contextlib.contextmanager
def watch_progress(pipeline_args: List[str], files_total: int, runs_total: int):
    """Yields a ``ProgressRecorder`` for the DoFns, and shows progress while the block runs, on
    DirectRunner (elsewhere the runner's own UI shows progress, and the recorder is a no-op)."""
    from pipelines.progress import ProgressDisplay, ProgressRecorder

    if not _is_direct_runner(pipeline_args):
        yield ProgressRecorder(None)
        return
    with tempfile.TemporaryDirectory(prefix='runferry-progress-') as directory:
        display = ProgressDisplay(directory, files_total, runs_total)
        display.start()
        try:
            yield ProgressRecorder(directory)
        finally:
            display.stop()


def finish(counters: Dict[str, int], elapsed: float, args) -> int:
    """Print the report (and write it as JSON with ``--report``); the exit status under ``--strict``."""
    from pipelines.report import print_report

    print_report(counters, elapsed=elapsed, repo=args.repo, skipped_path=args.skipped)
    if getattr(args, 'report', None):
        import fsspec

        with fsspec.open(args.report, 'w') as out:
            json.dump({'counters': counters, 'elapsed_seconds': round(elapsed, 3), 'repo': args.repo,
                       'skipped_path': args.skipped}, out, indent=2, sort_keys=True)
    skipped_any = any(counters.get(name, 0) for name in SKIP_COUNTERS)
    return 1 if (args.strict and skipped_any) else 0


def finish_outputs(converted: Dict[str, beam.PCollection], repo: str, skipped_path: str) -> None:
    """The end every conversion shares: index the written runs once, write the dead letters to one file."""
    from pipelines.report import CountContextsFn
    from transforms.runs import IndexRunsFn

    converted['written'] | 'CountContexts' >> beam.ParDo(CountContextsFn())
    (converted['written']
     | 'CollectRuns' >> beam.combiners.ToList()
     | 'IndexRuns' >> beam.ParDo(IndexRunsFn(repo)))
    (converted['skipped']
     | 'CollectSkipped' >> beam.combiners.ToList()
     | 'WriteSkipped' >> beam.ParDo(WriteSkipped(skipped_path)))
