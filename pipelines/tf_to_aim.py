"""TensorBoard logdir → Aim repo, as a Beam batch pipeline.

    python -m pipelines.tf_to_aim --logdir DIR_OR_URL --repo AIM_REPO [--layout aim|flat|tensorboard | --flat]
        [--experiment NAME]
        [--dry-run] [--skipped PATH] [--strict] [--storage-options JSON] [any Beam flag...]

Flags this module does not know (``--runner``, ``--direct_num_workers``...) go to Beam untouched.
"""
from __future__ import annotations

import sys

# Run as a program, a new local repo is created (pipelines.early_repo) while the imports below load.
if __name__ == '__main__':
    from pipelines import early_repo
    EARLY_REPO = early_repo.start(sys.argv[1:])
else:
    EARLY_REPO = None

import argparse
import logging
import posixpath
import time
import urllib.parse
from typing import Dict, List, Optional, Tuple

import apache_beam as beam

from connectors import redact
from connectors.event_files import EventFileSource, SourceError
from pipelines.cli import add_shared_flags, new_parser, parse_command, start
from pipelines.common import (UsageError, check_repo_writable, exit_program, fail_usage, finish, finish_outputs,
                              parse_json_flag, pipeline_options, read_counters, run_to_end, watch_progress)
from pipelines.progress import ProgressRecorder
from pipelines.report import NOT_CONVERTED, print_plan
from transforms.classify import (AIM, FLAT, LAYOUTS, TENSORBOARD, Plan, classify, is_event_file, look_like_runs,
                                 run_name)
from transforms.tensorboard import ConvertTensorBoard

PROG = 'tf_to_aim'
log = logging.getLogger(PROG)


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags (also read by the Flex Template's tests to match metadata.json)."""
    parser = new_parser(PROG, __doc__)
    parser.add_argument('--logdir', required=True, help='TensorBoard logdir: a local path or any fsspec URL')
    parser.add_argument('--layout', metavar='{' + ','.join(LAYOUTS) + '}',  # checked by parse: one line
                        help="how directories become runs: aim (default: Aim's converter rules), flat (Aim's "
                             "--flat rule), tensorboard (every directory holding event files is a run)")
    parser.add_argument('--flat', action='store_true',
                        help="Aim's --flat rule: every directory holding event files below depth 1 is a run, its "
                             "parent a group (same as --layout flat)")
    parser.add_argument('--experiment', help="Aim experiment of the runs (default: the logdir's base name)")
    parser.add_argument('--storage-options', '--storage_options', dest='storage_options',
                        help='JSON object passed to fsspec (e.g. {"anon": true})')
    parser.add_argument('--chunk-points', '--chunk_points', dest='chunk_points', type=int, default=100_000,
                        help=argparse.SUPPRESS)
    add_shared_flags(parser, dry_run_help='print the plan (runs, contexts, files, ignored files, files not '
                                          'converted); write nothing')
    return parser


def parse(argv: Optional[List[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    known, pipeline_args = parse_command(make_parser(), argv)
    if not known.logdir.strip():
        raise UsageError('--logdir is empty')
    known.storage_options = parse_json_flag('--storage-options', known.storage_options)
    known.layout = resolve_layout(known.layout, known.flat)
    redact.remember(redact.secrets_of_options(known.storage_options))
    if known.experiment is None:
        known.experiment = default_experiment(known.logdir)
    return known, pipeline_args


def resolve_layout(layout: Optional[str], flat: bool) -> str:
    """``--flat`` is ``--layout flat``; with another ``--layout`` it is a contradiction."""
    if layout is not None and layout not in LAYOUTS:
        raise UsageError(f'--layout {layout!r} is not one of {", ".join(LAYOUTS)}')
    if flat and layout not in (None, FLAT):
        raise UsageError(f'--flat contradicts --layout {layout} (--flat is --layout flat)')
    return FLAT if flat else (layout or AIM)


def default_experiment(logdir: str) -> str:
    """The logdir's base name; for a URL, of its path, or its host when the path is empty (never its
    user, password or query: ``http://alice:pw@host/`` → ``host``)."""
    if '://' not in logdir:
        return posixpath.basename(logdir.rstrip('/')) or 'default'
    parts = urllib.parse.urlsplit(logdir)
    return posixpath.basename(parts.path.rstrip('/')) or parts.netloc.rpartition('@')[2] or 'default'


def plan_source(args: argparse.Namespace) -> Tuple[EventFileSource, List[str], Plan]:
    """List the logdir once and classify it; a logdir with no event file is a usage error."""
    source = EventFileSource(args.logdir, args.storage_options)
    try:
        files = source.list_files()
    except SourceError as error:
        raise UsageError(str(error)) from None
    listing = [path for path in files if is_event_file(path)]
    if not listing:
        raise UsageError(f'logdir {source.logdir} holds no event files (no file name contains "tfevents")')
    return source, listing, classify(files, args.layout)


def build(p: beam.Pipeline, args: argparse.Namespace, source: EventFileSource, listing: List[str],
          progress: Optional[ProgressRecorder] = None) -> None:
    converted = (p
                 | 'ListEventFiles' >> beam.Create([listing])
                 | 'ConvertTensorBoard' >> ConvertTensorBoard(source, args.repo, args.experiment, args.layout,
                                                              args.chunk_points, progress))
    finish_outputs(converted, args.repo, args.skipped)


def warn_ignored(source: EventFileSource, plan: Plan) -> None:
    if plan.ignored:
        listed = ', '.join(source.url(p) for p in plan.ignored)
        log.warning('ignoring %d unorganized event file(s) (not in a run directory; --layout %s converts every '
                    'directory holding event files as a run): %s', len(plan.ignored), TENSORBOARD, listed)


def warn_merged_runs(source: EventFileSource, plan: Plan, layout: str) -> None:
    """Aim's rules make sibling directories contexts of one run even when they look like separate runs."""
    if layout == TENSORBOARD:
        return
    for run, contexts in look_like_runs(plan).items():
        log.warning('run %s: its context directories %s look like separate runs (numbered siblings), which '
                    "Aim's rules merge into one run; --layout %s converts each as its own run",
                    run_name(run, source.logdir), ', '.join(contexts), TENSORBOARD)


def run(argv: Optional[List[str]] = None) -> int:
    start()
    try:
        args, pipeline_args = parse(argv)
        source, listing, plan = plan_source(args)
        if not args.dry_run:
            check_repo_writable(args.repo, early=EARLY_REPO if argv is None else None)
    except UsageError as error:
        fail_usage(PROG, error)
    warn_ignored(source, plan)
    warn_merged_runs(source, plan, args.layout)
    if args.dry_run:
        print_plan(source, plan, args.experiment)
        return 0
    with watch_progress(pipeline_args, files_total=len(plan.assignments()), runs_total=len(plan.runs)) as progress:
        started = time.time()
        p = beam.Pipeline(options=pipeline_options(pipeline_args, runs=len(plan.runs)))
        build(p, args, source, listing, progress)
        result = run_to_end(p, PROG)
    counters = read_counters(result)
    counters['files_ignored'] = len(plan.ignored)
    counters.update(not_converted_counters(plan))
    status = finish(counters, time.time() - started, args, PROG)
    if not counters.get('runs_written') and not status:  # (a failed run has its own line)
        print(no_run_written(source, listing, args.skipped), file=sys.stderr)
        return 1
    return status


def not_converted_counters(plan: Plan) -> Dict[str, int]:
    """The report's count of files that are not event files, by kind (``files_not_converted:<kind>``)."""
    return {f'{NOT_CONVERTED}:{kind}': len(paths) for kind, paths in plan.not_converted.items()}


def no_run_written(source: EventFileSource, listing: List[str], skipped: str) -> str:
    """The one line that says why a logdir holding event files gave an empty repo."""
    return (f'{PROG}: no run written although {source.logdir} holds {len(listing)} event file(s): none of its runs '
            f'could be read or written (the reasons are in {skipped})')


if __name__ == '__main__':
    exit_program(run())
