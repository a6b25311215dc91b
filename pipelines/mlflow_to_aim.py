"""MLflow tracking store → Aim repo, as a Beam batch pipeline.

    python -m pipelines.mlflow_to_aim --tracking-uri URI [--experiment ID_OR_NAME ...] --repo AIM_REPO
        [--dry-run] [--skipped PATH] [--strict] [any Beam flag...]

URI: a local ``mlruns`` path or ``file://`` URL, a SQL store (``sqlite:///…``, ``postgresql://…``) or a
tracking server (``http(s)://…``); ``MLFLOW_TRACKING_URI`` when the flag is absent. Runs and experiments
are listed here, page by page, before the pipeline starts; the pipeline fetches and writes one run per
element. Flags this module does not know go to Beam untouched.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

import apache_beam as beam

from connectors.mlflow_source import ExperimentRef, MlflowSource, select_experiments
from pipelines.common import (UsageError, check_repo_writable, finish_outputs, default_skipped_path, fail_usage,
                              pipeline_options, read_counters)
from transforms.mlflow import ConvertMlflow

__all__ = ['parse', 'plan_source', 'build', 'run', 'print_plan', 'print_report']

PROG = 'mlflow_to_aim'
log = logging.getLogger(PROG)

Plan = List[Tuple[ExperimentRef, List[str]]]  # each chosen experiment and its run ids


def parse(argv: Optional[List[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(prog=f'python -m pipelines.{PROG}', description=__doc__.split('\n')[0])
    parser.add_argument('--tracking-uri', '--tracking_uri', dest='tracking_uri',
                        help='MLflow tracking URI (default: $MLFLOW_TRACKING_URI)')
    parser.add_argument('--experiment', action='append', default=[],
                        help='an experiment id or name to convert (repeatable; default: all experiments)')
    parser.add_argument('--repo', required=True, help='Aim repo: a local path (created if missing) or aim://HOST:PORT')
    parser.add_argument('--dry-run', '--dry_run', dest='dry_run', action='store_true',
                        help='print the experiments and runs that would be converted; write nothing')
    parser.add_argument('--skipped', help='dead-letter JSON-lines file (default: beside the repo)')
    parser.add_argument('--strict', action='store_true', help='exit 1 if anything was skipped')
    parser.add_argument('--page-size', '--page_size', dest='page_size', type=int, default=1000,
                        help=argparse.SUPPRESS)
    known, pipeline_args = parser.parse_known_args(argv)
    if known.tracking_uri is None:
        known.tracking_uri = os.environ.get('MLFLOW_TRACKING_URI')
    if not (known.tracking_uri or '').strip():
        raise UsageError('no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI')
    if not known.repo.strip():
        raise UsageError('--repo is empty')
    if any(not e.strip() for e in known.experiment):
        raise UsageError('--experiment is empty')
    if known.skipped is None:
        known.skipped = default_skipped_path(known.repo)
    return known, pipeline_args


def plan_source(args: argparse.Namespace) -> Tuple[MlflowSource, Plan]:
    """List experiments and their runs once (every page); an unknown ``--experiment`` is a usage error."""
    source = MlflowSource(args.tracking_uri, page_size=args.page_size)
    try:
        experiments = source.experiments()
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f'cannot list experiments at {source.tracking_uri}: {first_line}') from None
    chosen, unknown = select_experiments(experiments, args.experiment)
    if unknown:
        raise UsageError(f'--experiment {unknown[0]!r} matches no experiment id or name at {source.tracking_uri}')
    runs: Dict[str, List[str]] = {e.experiment_id: [] for e in chosen}
    for experiment_id, run_id in source.run_ids([e.experiment_id for e in chosen]):
        runs[experiment_id].append(run_id)
    return source, [(e, runs[e.experiment_id]) for e in chosen]


def build(p: beam.Pipeline, args: argparse.Namespace, source: MlflowSource, plan: Plan) -> None:
    run_ids = [run_id for _, ids in plan for run_id in ids]
    names = {experiment.experiment_id: experiment.name for experiment, _ in plan}
    converted = (p
                 | 'ListRuns' >> beam.Create(run_ids, reshuffle=False)
                 | 'ConvertMlflow' >> ConvertMlflow(source, args.repo, names))
    finish_outputs(converted, args.repo, args.skipped)


def print_plan(source: MlflowSource, plan: Plan, out=None) -> None:
    out = out or sys.stdout
    print(f'Plan for {source.tracking_uri}: {len(plan)} experiment(s), {sum(len(r) for _, r in plan)} run(s)',
          file=out)
    for experiment, run_ids in plan:
        print(f'experiment {experiment.experiment_id} {experiment.name!r}: {len(run_ids)} run(s)', file=out)
        for run_id in run_ids:
            print(f'  run {run_id}', file=out)


def print_report(counters: Dict[str, int], elapsed: float, repo: str, skipped_path: Optional[str],
                 out=None) -> None:
    out = out or sys.stdout
    rows = [(label, counters.get(key, 0)) for label, key in (
        ('runs read', 'runs_read'), ('runs skipped', 'runs_skipped'), ('runs written', 'runs_written'),
        ('runs failed', 'runs_failed'), ('points read', 'points_read'), ('points written', 'points_written'),
        ('points skipped', 'points_skipped'), ('artifacts read', 'artifacts_read'),
        ('artifacts skipped', 'artifacts_skipped'))]
    width = max(len(label) for label, _ in rows)
    print('runferry report', file=out)
    for label, value in rows:
        print(f'  {label:<{width}}  {value:>12,}', file=out)
    print(f'  {"elapsed":<{width}}  {elapsed:>11.1f}s', file=out)
    if skipped_path:
        print(f'  skipped items are listed in {skipped_path}', file=out)
    if not repo.startswith('aim://'):
        print(f'View the result: aim up --repo {repo}', file=out)


def run(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        args, pipeline_args = parse(argv)
        source, plan = plan_source(args)
        if not args.dry_run:
            check_repo_writable(args.repo)
    except UsageError as error:
        fail_usage(PROG, error)
    if args.dry_run:
        print_plan(source, plan)
        return 0
    started = time.time()
    p = beam.Pipeline(options=pipeline_options(pipeline_args))
    build(p, args, source, plan)
    result = p.run()
    result.wait_until_finish()
    counters = read_counters(result)
    print_report(counters, elapsed=time.time() - started, repo=args.repo, skipped_path=args.skipped)
    skipped_any = any(counters.get(k, 0) for k in ('runs_skipped', 'runs_failed', 'points_skipped',
                                                   'artifacts_skipped'))
    return 1 if (args.strict and skipped_any) else 0


if __name__ == '__main__':
    sys.exit(run())
