"""What both pipelines share: flag errors, Beam options, dead letters, the end-of-run report."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, List, Optional

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from connectors.redact import mask_text, remembered
from transforms.runs import NAMESPACE
from transforms.series import Skip

__all__ = ['UsageError', 'fail_usage', 'pipeline_options', 'default_skipped_path', 'WriteSkipped',
           'read_counters', 'check_repo_writable', 'parse_json_flag', 'watch_progress', 'finish',
           'SKIP_COUNTERS', 'finish_outputs', 'exit_program', 'masked_letter']

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
    """The one line a usage error ends with (secrets masked), and exit status 2."""
    print(mask_text(f'{prog}: error: {error}'), file=sys.stderr)
    raise SystemExit(2)


def parse_json_flag(flag: str, text: Optional[str]) -> Dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:  # the text itself is not shown: it may hold secrets
        raise UsageError(f'{flag} is not valid JSON ({error.msg} at column {error.colno})') from None
    if not isinstance(value, dict):
        raise UsageError(f'{flag} must be a JSON object, got a JSON {type(value).__name__}')
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


def check_repo_writable(repo: str, early=None) -> None:
    """A local repo must be creatable/writable; a remote one must answer (checked by the sink module).
    ``early`` (a ``pipelines.early_repo.EarlyRepo``) is a repo already being created for this command:
    if it is this one and it was created, it is taken as is."""
    if early is not None and early.claim(repo):
        return
    if repo.startswith('aim://'):
        from connectors.aim_remote import check_server
        check_server(repo)
        return
    path = os.path.abspath(repo)
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise UsageError(f'--repo {repo} is not writable ({probe} is not a writable directory)')
    from connectors.aim_sink import open_repo
    try:
        open_repo(repo, create=True)  # created here, once, so that workers never race to initialize it
    except Exception as error:
        raise UsageError(f'--repo {repo} cannot be opened as an Aim repo: {error}') from None


def masked_letter(skip: Skip, secrets: Iterable[str] = ()) -> str:
    """A dead letter's JSON line with the secrets in its texts (a source URI, a library's error) masked."""
    letter = {key: mask_text(value, secrets) if isinstance(value, str) else value
              for key, value in dataclasses.asdict(skip).items() if value is not None}
    return json.dumps(letter, sort_keys=True)


class WriteSkipped(beam.DoFn):
    """All dead letters (one list) → one JSON-lines file, sorted so the same input gives the same file.
    ``secrets``: the literal secrets the launcher knows, masked here too (a worker does not know them)."""

    def __init__(self, path: str, secrets: Iterable[str] = ()):
        self.path = path
        self.secrets = sorted(secrets)

    def process(self, skips: List[Skip]):
        import fsspec

        lines = sorted(masked_letter(skip, self.secrets) for skip in skips)
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
            json.dump({'counters': counters, 'elapsed_seconds': round(elapsed, 3), 'repo': mask_text(args.repo),
                       'skipped_path': mask_text(args.skipped)}, out, indent=2, sort_keys=True)
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
     | 'WriteSkipped' >> beam.ParDo(WriteSkipped(skipped_path, remembered())))
