"""What every conversion shares, whatever its source and destination: flag errors, Beam options, dead
letters, running to the end, the exit status."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
from typing import Any, Dict, Iterable, List, Optional

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from connectors.redact import mask_text
from runmodel import Skip
from transforms.counters import NAMESPACE

__all__ = ['UsageError', 'fail_usage', 'pipeline_options', 'WriteSkipped', 'read_counters', 'parse_json_flag',
           'watch_progress', 'finish', 'SKIP_COUNTERS', 'FAILED_RUN_COUNTERS', 'exit_program', 'run_to_end',
           'failure_line', 'first_run_failure', 'masked_letter', 'waits_for_job', 'submit']

# Counters that, when not zero, mean something read was not written.
SKIP_COUNTERS = ('files_skipped', 'files_ignored', 'records_skipped', 'points_skipped', 'runs_failed',
                 'runs_skipped', 'runs_unindexed', 'artifacts_skipped', 'tags_skipped')
# Counters of runs that were read (or listed) and not written: any of them makes the exit status 1.
FAILED_RUN_COUNTERS = ('runs_failed', 'runs_skipped', 'runs_unindexed')
_FAILED_RUN_WORDS = {'runs_failed': 'failed to write', 'runs_skipped': 'failed to read',
                     'runs_unindexed': 'written but not indexed'}


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
    Threads do not help: decoding holds the GIL. On the DirectRunner the workers' own logging is
    turned down to critical errors (INFO would flood the terminal, and an error that fails the
    pipeline is printed by ``run_to_end`` as one line), unless ``--default_sdk_harness_log_level``
    is given."""
    args = list(pipeline_args)
    if _is_direct_runner(args) and runs >= PARALLEL_FROM_RUNS and not any(
            a.startswith(('--direct_running_mode', '--direct_num_workers')) for a in args):
        args += ['--direct_running_mode=multi_processing', f'--direct_num_workers={os.cpu_count() or 1}']
    if _is_direct_runner(args) and not any(a.startswith('--default_sdk_harness_log_level') for a in args):
        # a worker's error is the launcher's one line (``run_to_end``), not pages of its traceback
        args.append('--default_sdk_harness_log_level=CRITICAL')
    return PipelineOptions(args, save_main_session=False)


def masked_letter(skip: Skip, secrets: Iterable[str] = ()) -> str:
    """A dead letter's JSON line with the secrets in its texts (a source URI, a library's error) masked."""
    letter = {key: mask_text(value, secrets) if isinstance(value, str) else value
              for key, value in dataclasses.asdict(skip).items() if value is not None}
    return json.dumps(letter, sort_keys=True)


class WriteSkipped(beam.DoFn):
    """All dead letters (one list) → one JSON-lines file, sorted so the same input gives the same file;
    outputs the file's lines (one list: what the job's report groups by reason, once the file is written).
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
        yield lines


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


def waits_for_job(pipeline_args: List[str], wait: bool = False) -> bool:
    """Whether the launcher waits for the job to end: where it runs here (the DirectRunner), or with
    ``--wait-for-job``. On another runner (Dataflow) it returns once the job is submitted, as a Flex Template
    launch must; the job writes its own report and dead letters (``pipelines.job_report``)."""
    return wait or _is_direct_runner(pipeline_args)


def submit(p: beam.Pipeline, prog: str):
    """Submit the pipeline to its runner and return its result without waiting for the job; a
    submission that fails is one line on stderr and ``SystemExit(1)``."""
    try:
        with _quiet_runner_errors():
            return p.run()
    except Exception as error:
        print(f'{prog}: error: the job could not be submitted: {failure_line(error)}', file=sys.stderr)
        raise SystemExit(1) from None


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


def finish(counters: Dict[str, int], elapsed: float, args, prog: str = 'runferry', destination=None) -> int:
    """Print the report, ending with the destination's own lines (a ``pipelines.seam.Destination``'s
    ``report_lines``); return the exit status: 1 when a run was not written (with one line on stderr:
    how many, and the first one's reason), or, under ``--strict``, when anything was skipped; else 0.
    (The ``--report`` JSON is written by the job itself: ``pipelines.job_report``.)"""
    from pipelines.report import print_report

    closing = destination.report_lines(counters) if destination is not None else []
    print_report(counters, elapsed=elapsed, skipped_path=args.skipped, closing_lines=closing)
    failed_runs = sum(counters.get(name, 0) for name in FAILED_RUN_COUNTERS)
    if failed_runs:
        how = ', '.join(f'{counters[name]:,} {_FAILED_RUN_WORDS[name]}' for name in FAILED_RUN_COUNTERS
                        if counters.get(name))
        reason = first_run_failure(args.skipped)
        print(mask_text(f'{prog}: error: {failed_runs:,} run{"" if failed_runs == 1 else "s"} not converted ({how})'
                        + (f'; the first: {reason}' if reason else '')), file=sys.stderr)
        return 1
    skipped_any = any(counters.get(name, 0) for name in SKIP_COUNTERS)
    return 1 if (args.strict and skipped_any) else 0


def first_run_failure(skipped_path: Optional[str]) -> Optional[str]:
    """The first dead letter of a whole run (in the file's order), as ``source: reason``."""
    if not skipped_path:
        return None
    import fsspec

    try:
        with fsspec.open(skipped_path, 'r') as lines:
            for line in lines:
                letter = json.loads(line) if line.strip() else {}
                if letter.get('kind') == 'run':
                    return f"{letter.get('source', '?')}: {' '.join(str(letter.get('reason', '')).split())}"
    except (OSError, ValueError):
        return None
    return None


class _Stopped(BaseException):
    """SIGINT or SIGTERM arrived (raised in the main thread by the handler ``run_to_end`` installs)."""


def run_to_end(p: beam.Pipeline, prog: str):
    """Run the pipeline and wait for it. The ways it can end other than normally each become one line
    on stderr and ``SystemExit``: SIGINT/SIGTERM (status 130/143: the DirectRunner's worker processes
    are killed, which leaves the repo as ``kill -9`` would, and the same command run again completes
    the work), and a failed pipeline (status 1: the line that says why, e.g. ``RepoFull: no space
    left on the filesystem of the Aim repo …``, not the runner's pages of traceback)."""
    received: List[int] = []

    def stop(signum, _frame):
        if not received:  # once: a second Ctrl-C must not interrupt the stopping
            received.append(signum)
            # The workers go first: unwinding, Beam's runner joins each worker's thread, which waits
            # for its process; a worker mid-bundle (or blocked sending to this launcher, which no
            # longer reads) would keep the launcher waiting for good (seen in CI: SIGTERM, 60 s).
            _quiet_worker_threads()
            _kill_worker_processes()
            raise _Stopped(signum)

    previous = {}
    if _in_main_thread():
        for signum in _STOP_SIGNALS:
            previous[signum] = signal.signal(signum, stop)
    try:
        with _quiet_runner_errors():
            result = p.run()
            result.wait_until_finish()
        return result
    except BaseException as error:
        # in the launcher's own process Beam re-raises what a DoFn raised (our _Stopped too) wrapped
        # in a RuntimeError, so the signal is known by what the handler received
        if not received and not isinstance(error, (Exception, KeyboardInterrupt)):
            raise
        _kill_worker_processes()
        if received or isinstance(error, KeyboardInterrupt):
            signum = received[0] if received else signal.SIGINT
            print(f'{prog}: stopped by {signal.Signals(signum).name}; runs written so far are kept, and '
                  f'running the same command again completes the conversion', file=sys.stderr)
            raise SystemExit(128 + signum) from None
        print(f'{prog}: error: the conversion failed: {failure_line(error)}', file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# Beam's loggers that print a failed bundle's traceback in the launcher (in-process workers, and the
# relay of worker processes' logs); the failure is printed as one line instead
_RUNNER_ERROR_LOGGERS = ('apache_beam.runners.common', 'apache_beam.runners.worker.sdk_worker',
                         'apache_beam.runners.portability.local_job_service',
                         'apache_beam.runners.portability.fn_api_runner.fn_runner')


@contextlib.contextmanager
def _quiet_runner_errors():
    import logging

    loggers = [logging.getLogger(name) for name in _RUNNER_ERROR_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _quiet_worker_threads() -> None:
    """Once the workers are killed on a stop signal, the runner's thread that waited for each one
    raises ``RuntimeError('Worker subprocess exited with return code -9')``: expected then, so not
    printed as a traceback (the stop is the one line). Other threads' errors still print."""
    import threading

    default = threading.excepthook

    def hook(args):
        if args.thread is not None and args.thread.name == 'run_worker' and issubclass(args.exc_type, RuntimeError):
            return
        default(args)

    threading.excepthook = hook


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# errors that say what stopped a pipeline, by the name a worker's traceback prints them with
_FATAL_ERROR_NAMES = ('RepoFull',)


def failure_line(error: BaseException) -> str:
    """One line for a failed pipeline. A runner's error carries the worker's whole traceback in its
    message: the line of a known fatal error in it (``RepoFull: …``) is the one that says why; else the
    last line that names an error."""
    text = str(error) or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for name in _FATAL_ERROR_NAMES:
        for line in lines:
            at = line.find(name + ': ')
            if at >= 0:
                return line[at:at + _LINE_MAX]
    named = [line for line in lines if line.split(':', 1)[0].endswith(('Error', 'Exception'))]
    if named:
        return named[-1][:_LINE_MAX]
    return f'{type(error).__name__}: {lines[-1] if lines else ""}'[:_LINE_MAX]


_LINE_MAX = 500


def _kill_worker_processes() -> None:
    """SIGKILL every process this one started (the DirectRunner's SDK workers, through their shells),
    deepest first: left running, a worker would go on writing after the launcher has exited."""
    for pid in reversed(_descendants(os.getpid())):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _descendants(root: int) -> List[int]:
    """Pids of ``root``'s children, grandchildren, … (from /proc; empty where there is none)."""
    children: Dict[int, List[int]] = {}
    try:
        entries = os.listdir('/proc')
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as stat:
                fields = stat.read().rsplit(b')', 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        for child in children.get(pid, ()):
            found.append(child)
            frontier.append(child)
    return found

