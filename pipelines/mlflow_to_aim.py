"""MLflow tracking store → Aim repo, as a Beam batch pipeline.

    python -m pipelines.mlflow_to_aim --tracking-uri URI [--experiment ID_OR_NAME ...] --repo AIM_REPO
        [--dry-run] [--skipped PATH] [--strict] [--report PATH] [any Beam flag...]

URI: a local ``mlruns`` path or ``file://`` URL, a SQL store (``sqlite:///…``, ``postgresql://…``) or a
tracking server (``http(s)://…``); ``MLFLOW_TRACKING_URI`` when the flag is absent. Runs and experiments
are listed here, page by page, before the pipeline starts; the pipeline fetches and writes one run per
element. Flags this module does not know go to Beam untouched.
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
import dataclasses
import logging
import os
import time
from typing import Dict, List, Optional, Tuple

import apache_beam as beam

from connectors.mlflow_source import (ExperimentRef, MlflowSource, artifact_kind, select_experiments,
                                      store_location_problem)
from pipelines.common import (UsageError, check_repo_writable, default_skipped_path, exit_program, fail_usage,
                              finish, finish_outputs, pipeline_options, read_counters)
from pipelines.report import print_tree
from transforms.mlflow import SVG_EXTRA, ConvertMlflow, aim_tags, svg_supported, user_tags

__all__ = ['make_parser', 'parse', 'plan_source', 'experiment_order', 'build', 'run', 'describe_runs', 'print_plan', 'RunSummary']

PROG = 'mlflow_to_aim'
log = logging.getLogger(PROG)

Plan = List[Tuple[ExperimentRef, List[str]]]  # each chosen experiment and its run ids


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags (also read by the Flex Template's tests to match metadata.json)."""
    parser = argparse.ArgumentParser(prog=f'python -m pipelines.{PROG}', description=__doc__.split('\n')[0])
    parser.add_argument('--tracking-uri', '--tracking_uri', dest='tracking_uri',
                        help='MLflow tracking URI (default: $MLFLOW_TRACKING_URI)')
    parser.add_argument('--experiment', action='append', default=[],
                        help='an experiment id or name to convert (repeatable; default: all experiments)')
    parser.add_argument('--repo', required=True, help='Aim repo: a local path (created if missing) or aim://HOST:PORT')
    parser.add_argument('--dry-run', '--dry_run', dest='dry_run', action='store_true',
                        help='print the experiments and runs that would be converted, as a tree; write nothing')
    parser.add_argument('--skipped', help='dead-letter JSON-lines file (default: beside the repo)')
    parser.add_argument('--strict', action='store_true', help='exit 1 if anything was skipped')
    parser.add_argument('--report', help='also write the final report as JSON to this path')
    parser.add_argument('--page-size', '--page_size', dest='page_size', type=int, default=1000,
                        help=argparse.SUPPRESS)
    return parser


def parse(argv: Optional[List[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    known, pipeline_args = make_parser().parse_known_args(argv)
    if known.tracking_uri is None:
        known.tracking_uri = os.environ.get('MLFLOW_TRACKING_URI')
    if not (known.tracking_uri or '').strip():
        raise UsageError('no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI')
    problem = store_location_problem(known.tracking_uri)
    if problem:
        raise UsageError(f'--tracking-uri: {problem}')
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
        raise UsageError(f'cannot list experiments at {source.tracking_uri}: {_first_line(error)}') from None
    chosen, unknown = select_experiments(experiments, args.experiment)
    if unknown:
        raise UsageError(f'--experiment {unknown[0]!r} matches no experiment id or name at {source.tracking_uri}')
    chosen = sorted(chosen, key=experiment_order)
    runs: Dict[str, List[str]] = {e.experiment_id: [] for e in chosen}
    try:
        for experiment_id, run_id in source.run_ids([e.experiment_id for e in chosen]):
            runs[experiment_id].append(run_id)
    except Exception as error:
        raise UsageError(f'cannot list runs at {source.tracking_uri}: {_first_line(error)}') from None
    return source, [(e, runs[e.experiment_id]) for e in chosen]


def experiment_order(experiment: ExperimentRef) -> Tuple[str, str, str]:
    """Experiments are planned and printed by name (case-insensitively, then as written; names are
    unique in a store). MLflow lists the newest first, and experiments created in the same millisecond
    in an order of its own, so its order is not one to show."""
    return experiment.name.casefold(), experiment.name, experiment.experiment_id


def _first_line(error: Exception) -> str:
    """An error's message as one line (its first), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def build(p: beam.Pipeline, args: argparse.Namespace, source: MlflowSource, plan: Plan) -> None:
    run_ids = [run_id for _, ids in plan for run_id in ids]
    names = {experiment.experiment_id: experiment.name for experiment, _ in plan}
    converted = (p
                 | 'ListRuns' >> beam.Create(run_ids, reshuffle=False)
                 | 'ConvertMlflow' >> ConvertMlflow(source, args.repo, names))
    finish_outputs(converted, args.repo, args.skipped)


# ------------------------------------------------------------------------------------------------ dry run

@dataclasses.dataclass
class RunSummary:
    """What the dry run shows of one MLflow run, from its listing and its artifact listing (nothing is
    downloaded)."""
    run_id: str
    name: str
    status: str
    metrics: int
    params: int
    tags: Dict[str, str]
    artifacts: Dict[str, int]  # Aim kind (image, text, audio) -> artifacts that become one
    skipped_artifacts: List[Tuple[str, str]]  # (path, why)

    @property
    def artifact_count(self) -> int:
        return sum(self.artifacts.values()) + len(self.skipped_artifacts)


def describe_runs(source: MlflowSource, plan: Plan) -> Dict[str, RunSummary]:
    """Per planned run: its counts of metrics, params, user tags and artifacts by what they become.
    One ``search_runs`` page per 1000 runs, and one artifact listing per run."""
    wanted = {run_id for _, ids in plan for run_id in ids}
    svg = svg_supported()
    summaries: Dict[str, RunSummary] = {}
    for experiment, _ in plan:
        token = None
        while True:
            page = source.client.search_runs([experiment.experiment_id], max_results=source.page_size,
                                             page_token=token)
            for found in page:
                info, data = found.info, found.data
                if info.run_id not in wanted:
                    continue
                kinds: Dict[str, int] = {}
                skipped = []
                for path, size in source.list_artifacts(info.run_id):
                    kind = artifact_kind(path)
                    if kind is None:
                        skipped.append((path, 'no Aim object for this file type'))
                    elif size is not None and size > source.max_artifact_bytes:
                        skipped.append((path, f'larger than {source.max_artifact_bytes:,} bytes'))
                    elif not svg and path.lower().endswith('.svg'):
                        skipped.append((path, f'rendering an SVG needs {SVG_EXTRA}'))
                    else:
                        kinds[kind] = kinds.get(kind, 0) + 1
                summaries[info.run_id] = RunSummary(
                    run_id=info.run_id, name=info.run_name or info.run_id, status=info.status,
                    metrics=len(data.metrics), params=len(data.params),
                    tags=user_tags(data.tags),
                    artifacts=kinds, skipped_artifacts=skipped)
            token = page.token
            if not token:
                break
    return summaries


def _plural(count: int, noun: str, plural: Optional[str] = None) -> str:
    return f'{count:,} {noun if count == 1 else (plural or noun + "s")}'


_KIND_ORDER = {'image': 0, 'text': 1, 'audio': 2}
_KIND_NOUNS = {'image': ('image', 'images'), 'text': ('text', 'texts'), 'audio': ('audio clip', 'audio clips')}


def _run_line(summary: RunSummary) -> str:
    parts = [_plural(summary.metrics, 'metric'), _plural(summary.params, 'param'), _plural(len(summary.tags), 'tag')]
    artifacts = _plural(summary.artifact_count, 'artifact')
    if summary.artifact_count:
        becomes = [_plural(count, *_KIND_NOUNS.get(kind, (kind, kind + 's')))
                   for kind, count in sorted(summary.artifacts.items(), key=lambda kv: _KIND_ORDER.get(kv[0], 9))]
        if summary.skipped_artifacts:
            becomes.append(f'{len(summary.skipped_artifacts):,} skipped')
        artifacts += f' ({", ".join(becomes)})'
    parts.append(artifacts)
    return f'run {summary.name!r} [{summary.status}, id {summary.run_id}]: {", ".join(parts)}'


def print_plan(source: MlflowSource, plan: Plan, repo: str, summaries: Dict[str, RunSummary], out=None) -> None:
    """The dry run: experiments → runs (with their counts) → artifacts that will be skipped."""
    out = out or sys.stdout
    listed = [summaries[r] for _, ids in plan for r in ids if r in summaries]
    total = {
        'metric': sum(s.metrics for s in listed), 'param': sum(s.params for s in listed),
        'artifact': sum(s.artifact_count for s in listed),
        'skipped': sum(len(s.skipped_artifacts) for s in listed),
    }
    title = (f'Plan for {source.tracking_uri} → Aim repo {repo} (dry run: nothing is written)\n'
             f'{_plural(len(plan), "experiment")}, {_plural(sum(len(ids) for _, ids in plan), "run")}: '
             f'{_plural(total["metric"], "metric")}, {_plural(total["param"], "param")}, '
             f'{_plural(total["artifact"], "artifact")} ({total["skipped"]:,} to skip)')
    nodes = []
    for experiment, run_ids in plan:
        run_nodes = []
        for run_id in run_ids:
            summary = summaries.get(run_id)
            if summary is None:  # deleted between the two listings
                run_nodes.append((f'run {run_id}: no longer listed', []))
                continue
            names, refused = aim_tags(summary.tags)
            below = [(f'Aim tags: {", ".join(sorted(names))}', [])] if names else []
            below += [(f'tag {key!r} stays an attribute only: {why}', []) for key, why in refused]
            below += [(f'skip {path}: {why}', []) for path, why in summary.skipped_artifacts]
            run_nodes.append((_run_line(summary), below))
        nodes.append((f'experiment {experiment.name!r} [id {experiment.experiment_id}]: '
                      f'{_plural(len(run_ids), "run")}', run_nodes))
    print_tree(title, nodes, out)


def run(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        args, pipeline_args = parse(argv)
        source, plan = plan_source(args)
        if not args.dry_run:
            check_repo_writable(args.repo, early=EARLY_REPO if argv is None else None)
    except UsageError as error:
        fail_usage(PROG, error)
    if args.dry_run:
        print_plan(source, plan, args.repo, describe_runs(source, plan))
        return 0
    started = time.time()
    p = beam.Pipeline(options=pipeline_options(pipeline_args, runs=sum(len(ids) for _, ids in plan)))
    build(p, args, source, plan)
    result = p.run()
    result.wait_until_finish()
    counters = read_counters(result)
    return finish(counters, time.time() - started, args)


if __name__ == '__main__':
    exit_program(run())
