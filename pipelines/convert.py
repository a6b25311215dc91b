"""One conversion: a source plug and a destination plug (``pipelines.seam``), composed.

``convert`` is the whole of an entry point's ``run``: parse the command line (``pipelines.cli``), check
it (the source lists itself, the destination checks it can be written), print the dry run (the
source's plan), or build and run the pipeline::

    PBegin ─Read─▶ runs ─Write─▶ written          (Source.read, Destination.write)
      read's and write's dead letters ─CollectSkipped─▶ one JSON-lines file (WriteSkipped)
      read's and write's counts, the dead letters ─ReportJob─▶ --report JSON, the job log (pipelines.job_report)

On a runner that runs the job here (DirectRunner), or with ``--wait-for-job``, it then waits, reads the
counters, prints the report and returns the exit status. On another runner (Dataflow) it returns once
the job is submitted, with a line saying where the job will write its report and dead letters.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from typing import Any, List, Optional, Type

import apache_beam as beam

from connectors.redact import mask_text, remembered
from pipelines.cli import add_shared_flags, new_parser, parse_command, start
from pipelines.common import (UsageError, WriteSkipped, fail_usage, finish, pipeline_options, read_counters,
                              run_to_end, submit, waits_for_job, watch_progress)
from pipelines.job_report import ReportJob, WriteReport
from pipelines.seam import Destination, Source
from transforms.counters import COUNTS

__all__ = ['convert', 'make_parser', 'parse', 'Command', 'build']


def make_parser(prog: str, doc: str, source_cls: Type[Source], destination_cls: Type[Destination]
                ) -> argparse.ArgumentParser:
    """The command line of ``prog``: the source's flags, the destination's, then the run's."""
    parser = new_parser(prog, doc)
    source_cls.add_flags(parser)
    destination_cls.add_flags(parser)
    add_shared_flags(parser, dry_run_help=source_cls.DRY_RUN_HELP)
    return parser


@dataclasses.dataclass
class Command:
    """A parsed command line: the flags (values resolved: defaults filled in by the plugs), Beam's
    arguments, and the two plugs they describe."""
    args: argparse.Namespace
    pipeline_args: List[str]
    source: Source
    destination: Destination


def parse(parser: argparse.ArgumentParser, source_cls: Type[Source], destination_cls: Type[Destination],
          argv: Optional[List[str]] = None) -> Command:
    """Parse and check the command line (``UsageError``: one line); nothing is listed or touched yet."""
    args, pipeline_args = parse_command(parser, argv)
    destination = destination_cls.from_args(args)
    source = source_cls.from_args(args)
    if args.skipped is None:
        args.skipped = destination.default_skipped_path()
    return Command(args, pipeline_args, source, destination)


def build(p: beam.Pipeline, command: Command, progress=None, started: Optional[float] = None) -> None:
    """Read → write, every dead letter of both into the one file ``--skipped`` names, and the report of
    both (their ``counts``: ``transforms.counted``) written by the job (``--report``, the job log).
    ``started``: when the conversion started (epoch seconds), for the report's elapsed time."""
    args = command.args
    read = p | 'Read' >> command.source.read(progress)
    written = read['runs'] | 'Write' >> command.destination.write(progress)
    letters = ((read['skipped'], written['skipped'])
               | 'FlattenSkipped' >> beam.Flatten()
               | 'CollectSkipped' >> beam.combiners.ToList()
               | 'WriteSkipped' >> beam.ParDo(WriteSkipped(args.skipped, remembered())))
    counts = [part[COUNTS] for part in (read, written) if COUNTS in part]
    report = WriteReport(args.report, args.skipped, command.destination, command.source.counters(),
                         time.time() if started is None else started, remembered())
    tuple(counts or [p | 'NothingCounted' >> beam.Create([])]) | 'Report' >> ReportJob(report, letters)


def convert(prog: str, doc: str, source_cls: Type[Source], destination_cls: Type[Destination],
            argv: Optional[List[str]] = None, early: Any = None) -> int:
    """Run the command ``prog`` (``argv``, or the process's arguments) and return its exit status: 0,
    1 (a run not written; under ``--strict``, anything skipped), 2 (a usage error, before any work).
    ``early``: what the entry point started before its imports (``pipelines.early_repo``), used only
    for the process's own arguments (``argv`` None)."""
    start(prog)
    try:
        command = parse(make_parser(prog, doc, source_cls, destination_cls), source_cls, destination_cls, argv)
        source, destination, args = command.source, command.destination, command.args
        source.log = logging.getLogger(prog)
        source.plan()
        if not args.dry_run:
            destination.check(early=early if argv is None else None)
    except UsageError as error:
        fail_usage(prog, error)
    source.warn()
    if args.dry_run:
        source.print_plan(destination)
        return 0
    if not waits_for_job(command.pipeline_args, args.wait_for_job):
        return _submit_only(command, prog)
    with watch_progress(command.pipeline_args, files_total=source.files_total,
                        runs_total=source.runs_total) as progress:
        started = time.time()
        p = beam.Pipeline(options=pipeline_options(command.pipeline_args, runs=source.runs_total))
        build(p, command, progress, started)
        result = run_to_end(p, prog)
    counters = read_counters(result)
    counters.update(source.counters())
    status = finish(counters, time.time() - started, args, prog, destination)
    if not counters.get('runs_written') and not status:  # (a failed run has its own line)
        line = source.nothing_written(args.skipped)
        if line:
            print(f'{prog}: {line}', file=sys.stderr)
            return 1
    return status


def _submit_only(command: Command, prog: str) -> int:
    """Submit the job and return 0 without waiting for it (a Flex Template launch, Dataflow): one line
    says which job, and where it will write its report and its dead letters."""
    started = time.time()
    p = beam.Pipeline(options=pipeline_options(command.pipeline_args, runs=command.source.runs_total))
    build(p, command, started=started)
    result = submit(p, prog)
    job_id = getattr(result, 'job_id', None)
    job_id = job_id() if callable(job_id) else job_id
    job = f'job {job_id}' if job_id else 'the job'
    report = (f'its report to {command.args.report} and to the job log' if command.args.report else
              'its report to the job log (--report also writes it as JSON)')
    print(mask_text(f'{prog}: {job} submitted, not waited for (--wait-for-job waits); it writes {report}, and its '
                    f'dead letters to {command.args.skipped}'))
    return 0
