"""The MLflow source: a tracking store (a local ``mlruns`` path or ``file://`` URL, a SQL store such as
``sqlite:///…`` or ``postgresql://…``, or a tracking server ``http(s)://…``) whose runs become runs.

Its flags (``--tracking-uri``, ``--experiment``, ``--include-deleted``), its plan (experiments and their
runs listed here, page by page, before the pipeline starts; deleted runs counted), its dry run (a tree
of experiments → runs, nested runs under their parent → what their artifacts become) and its read
(``transforms.mlflow.ReadMlflow``: runs fetched in batches, each mapped on its own).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Dict, List, Optional, Tuple

import apache_beam as beam

from connectors import redact
from connectors.mlflow_source import MlflowSource as MlflowStore
from connectors.mlflow_source import (ExperimentRef, artifact_kind, run_datasets, select_experiments,
                                      stepped_image_part, store_location_problem)
from connectors.sql_store import unreachable_database
from pipelines.common import UsageError
from pipelines.report import print_tree
from pipelines.seam import Destination, Source
from transforms.mlflow import PARENT_TAG, SVG_EXTRA, ReadMlflow, aim_tags, svg_supported, user_tags

__all__ = ['MlflowSource', 'plan_store', 'deleted_runs', 'experiment_order', 'describe_runs', 'print_mlflow_plan',
           'RunSummary', 'DELETED_COUNTER']

Plan = List[Tuple[ExperimentRef, List[str]]]  # each chosen experiment and its run ids
DELETED_COUNTER = 'runs_deleted'  # deleted runs left out of the conversion (the report's 'runs deleted')


class MlflowSource(Source):
    """An MLflow tracking store (``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``)."""

    DRY_RUN_HELP = 'print the experiments and runs that would be converted, as a tree; write nothing'

    def __init__(self, tracking_uri: str, experiments: List[str], include_deleted: bool = False,
                 page_size: int = 1000):
        self.tracking_uri = tracking_uri
        self.experiments = experiments  # ids or names asked for; none: all
        self.include_deleted = include_deleted
        self.page_size = page_size
        self.store: Optional[MlflowStore] = None  # after ``plan``
        self.planned: Plan = []
        self.deleted: Dict[str, int] = {}  # experiment id -> deleted runs left out

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--tracking-uri', '--tracking_uri', dest='tracking_uri',
                            help='MLflow tracking URI (default: $MLFLOW_TRACKING_URI)')
        parser.add_argument('--experiment', action='append', default=[],
                            help='an experiment id or name to convert (repeatable; default: all experiments)')
        parser.add_argument('--include-deleted', '--include_deleted', dest='include_deleted', action='store_true',
                            help="also convert runs deleted in MLflow but not yet removed by 'mlflow gc' "
                                 "(default: they are counted, not converted)")
        parser.add_argument('--page-size', '--page_size', dest='page_size', type=int, default=1000,
                            help=argparse.SUPPRESS)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> 'MlflowSource':
        """Also resolves ``args.tracking_uri`` in place from ``$MLFLOW_TRACKING_URI`` when the flag is absent."""
        if args.tracking_uri is None:
            args.tracking_uri = os.environ.get('MLFLOW_TRACKING_URI')
            redact.remember(redact.secrets_of_uri(args.tracking_uri))
        if not (args.tracking_uri or '').strip():
            raise UsageError('no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI')
        if any(not e.strip() for e in args.experiment):
            raise UsageError('--experiment is empty')
        return cls(args.tracking_uri, args.experiment, args.include_deleted, args.page_size)

    def plan(self) -> None:
        self.store, self.planned = plan_store(self.tracking_uri, self.experiments, self.include_deleted,
                                              self.page_size)
        self.deleted = {} if self.include_deleted else deleted_runs(self.store, self.planned)

    @property
    def runs_total(self) -> int:
        return sum(len(ids) for _, ids in self.planned)

    def print_plan(self, destination: Destination, out=None) -> None:
        print_mlflow_plan(self.store, self.planned, destination.describe(),
                          describe_runs(self.store, self.planned, self.include_deleted), out, deleted=self.deleted)

    def read(self, progress=None) -> beam.PTransform:
        run_ids = [run_id for _, ids in self.planned for run_id in ids]
        names = {experiment.experiment_id: experiment.name for experiment, _ in self.planned}
        return ReadMlflow(self.store, run_ids, names)

    def counters(self) -> Dict[str, int]:
        deleted = sum(self.deleted.values())
        return {DELETED_COUNTER: deleted} if deleted else {}


def plan_store(tracking_uri: str, wanted: List[str], include_deleted: bool = False, page_size: int = 1000
               ) -> Tuple[MlflowStore, Plan]:
    """List experiments and their runs once (every page); an unknown ``--experiment`` (``wanted``: ids or
    names; none: all) or a local store that is not there (checked before MLflow is asked anything) is a
    usage error."""
    problem = store_location_problem(tracking_uri) or unreachable_database(tracking_uri)
    if problem:
        raise UsageError(f'--tracking-uri: {problem}')
    source = MlflowStore(tracking_uri, page_size=page_size)
    try:
        experiments = source.experiments()
    except Exception as error:
        raise UsageError(f'cannot list experiments at {source.tracking_uri}: {_first_line(error)}') from None
    chosen, unknown = select_experiments(experiments, wanted)
    if unknown:
        raise UsageError(f'--experiment {unknown[0]!r} matches no experiment id or name at {source.tracking_uri}')
    chosen = sorted(chosen, key=experiment_order)
    runs: Dict[str, List[str]] = {e.experiment_id: [] for e in chosen}
    try:
        for experiment_id, run_id in source.run_ids([e.experiment_id for e in chosen],
                                                    include_deleted=include_deleted):
            runs[experiment_id].append(run_id)
    except Exception as error:
        raise UsageError(f'cannot list runs at {source.tracking_uri}: {_first_line(error)}') from None
    return source, [(e, runs[e.experiment_id]) for e in chosen]


def deleted_runs(source: MlflowStore, plan: Plan) -> Dict[str, int]:
    """Experiment id → how many of its runs are deleted (and so not converted without
    ``--include-deleted``): one listing of deleted runs per experiment."""
    counts = {experiment.experiment_id: 0 for experiment, _ in plan}
    try:
        for experiment_id, _ in source.deleted_run_ids(list(counts)):
            counts[experiment_id] += 1
    except Exception as error:
        raise UsageError(f'cannot list deleted runs at {source.tracking_uri}: {_first_line(error)}') from None
    return counts


def experiment_order(experiment: ExperimentRef) -> Tuple[str, str, str]:
    """Experiments are planned and printed by name (case-insensitively, then as written; names are
    unique in a store). MLflow lists the newest first, and experiments created in the same millisecond
    in an order of its own, so its order is not one to show."""
    return experiment.name.casefold(), experiment.name, experiment.experiment_id


def _first_line(error: Exception) -> str:
    """An error's message as one line (its first), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ------------------------------------------------------------------------------------------------ dry run

@dataclasses.dataclass
class RunSummary:
    """What the dry run shows of one MLflow run, from its listing and its artifact listing (nothing is
    downloaded)."""
    run_id: str
    name: str
    status: str
    start_time: Optional[int]
    parent_id: Optional[str]  # mlflow.parentRunId of a nested run
    deleted: bool
    metrics: int
    params: int
    tags: Dict[str, str]
    artifacts: Dict[str, int]  # Aim kind (image, text, audio) -> artifacts that become one
    skipped_artifacts: List[Tuple[str, str]]  # (path, why)
    image_sequences: Dict[str, List[int]] = dataclasses.field(default_factory=dict)  # stepped images: key -> steps
    datasets: List[str] = dataclasses.field(default_factory=list)  # 'name (context)' of each log_input
    models: List[str] = dataclasses.field(default_factory=list)  # 'name [model id]' of each logged model

    @property
    def artifact_count(self) -> int:
        return sum(self.artifacts.values()) + len(self.skipped_artifacts)


def describe_runs(source: MlflowStore, plan: Plan, include_deleted: bool = False) -> Dict[str, RunSummary]:
    """Per planned run: its counts of metrics, params, user tags and artifacts by what they become.
    One ``search_runs`` page per 1000 runs, and one artifact listing per run."""
    wanted = {run_id for _, ids in plan for run_id in ids}
    svg = svg_supported()
    summaries: Dict[str, RunSummary] = {}
    for _, found in source.runs([experiment.experiment_id for experiment, _ in plan], include_deleted):
        info, data = found.info, found.data
        if info.run_id not in wanted:
            continue
        kinds, skipped, sequences = _artifact_outcomes(source, info.run_id, info.artifact_uri, svg)
        summaries[info.run_id] = RunSummary(
            run_id=info.run_id, name=info.run_name or info.run_id, status=info.status,
            start_time=info.start_time, parent_id=data.tags.get(PARENT_TAG) or None,
            deleted=info.lifecycle_stage == 'deleted',
            metrics=len(data.metrics), params=len(data.params), tags=user_tags(data.tags),
            artifacts=kinds, skipped_artifacts=skipped, image_sequences=sequences,
            datasets=[f'{d.name} ({d.context or "no context"})' for d in run_datasets(found)],
            models=_model_names(source, found))
    return summaries


def _model_names(source: MlflowStore, run) -> List[str]:
    """'name [model id]' of each model the run logged (MLflow 3's run outputs)."""
    outputs = getattr(getattr(run, 'outputs', None), 'model_outputs', None) or []
    names = []
    for output in outputs:
        model = source.client.get_logged_model(output.model_id)
        names.append(f'{model.name} [{model.model_id}]')
    return names


def _artifact_outcomes(source: MlflowStore, run_id: str, artifact_uri: str, svg: bool
                       ) -> Tuple[Dict[str, int], List[Tuple[str, str]], Dict[str, List[int]]]:
    """A run's artifact files as the conversion will take them: Aim kind → how many, (path, why) of
    those it will skip, and the steps of each stepped image key (its thumbnails are parts of it, not
    artifacts of their own)."""
    kinds: Dict[str, int] = {}
    skipped = []
    sequences: Dict[str, List[int]] = {}
    for path, size in source.list_artifacts(run_id, artifact_uri):
        stepped = stepped_image_part(path)
        if stepped is not None and stepped.part != 'image':
            continue
        if stepped is not None:
            sequences.setdefault(stepped.key, []).append(stepped.step)
        kind = artifact_kind(path)
        if kind is None:
            skipped.append((path, 'no Aim object for this file type'))
        elif size is not None and size > source.max_artifact_bytes:
            skipped.append((path, f'larger than {source.max_artifact_bytes:,} bytes'))
        elif not svg and path.lower().endswith('.svg'):
            skipped.append((path, f'rendering an SVG needs {SVG_EXTRA}'))
        else:
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds, skipped, {key: sorted(set(steps)) for key, steps in sequences.items()}


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
    state = f'{summary.status}, deleted' if summary.deleted else summary.status
    return f'run {summary.name!r} [{state}, id {summary.run_id}]: {", ".join(parts)}'


def _run_order(summary: RunSummary) -> Tuple[int, str, str]:
    """Sibling runs in the tree: oldest first, then by name and id, so that equal start times (runs
    created in one millisecond) still print in one order."""
    return summary.start_time or 0, summary.name, summary.run_id


def _parents(summaries: List[RunSummary]) -> Dict[str, str]:
    """Run id → the id of its parent among ``summaries``, for each nested run whose parent is there (a
    parent chain that loops back to the run is not followed: each of its runs stays a root)."""
    listed = {s.run_id: s.parent_id for s in summaries}
    parents = {}
    for run_id, parent_id in listed.items():
        seen, current = {run_id}, parent_id
        while current in listed and current not in seen:
            seen.add(current)
            current = listed[current]
        if parent_id in listed and current not in seen:
            parents[run_id] = parent_id
    return parents


def _steps_text(steps: List[int]) -> str:
    """``0–2`` for consecutive steps, else the steps themselves (``0, 5, 10``)."""
    if len(steps) > 1 and steps == list(range(steps[0], steps[-1] + 1)):
        return f'steps {steps[0]}–{steps[-1]}'
    return 'step' + 's' * (len(steps) > 1) + ' ' + ', '.join(str(step) for step in steps)


def _run_node(summary: RunSummary, children: Dict[str, List[RunSummary]], listed: Dict[str, RunSummary]):
    """One run's branch: its line, its tags and skipped artifacts, then its child runs, each the same way."""
    names, refused = aim_tags(summary.tags)
    below = [(f'Aim tags: {", ".join(sorted(names))}', [])] if names else []
    below += [(f'tag {key!r} stays an attribute only: {why}', []) for key, why in refused]
    if summary.parent_id and summary.parent_id not in listed:
        below.append((f'child of run {summary.parent_id}, which is not in this plan', []))
    below += [(f'image sequence {key!r}: {_plural(len(steps), "step")} ({_steps_text(steps)})', [])
              for key, steps in sorted(summary.image_sequences.items())]
    below += [(f'dataset {text}', []) for text in summary.datasets]
    below += [(f'model {text}', []) for text in summary.models]
    below += [(f'skip {path}: {why}', []) for path, why in summary.skipped_artifacts]
    below += [_run_node(child, children, listed) for child in children.get(summary.run_id, [])]
    return _run_line(summary), below


def _experiment_runs(run_ids: List[str], summaries: Dict[str, RunSummary]):
    """An experiment's runs as a tree: each nested run under its parent (MLflow's ``mlflow.parentRunId``)."""
    listed = {r: summaries[r] for r in run_ids if r in summaries}
    parents = _parents(list(listed.values()))
    children: Dict[str, List[RunSummary]] = {}
    for run_id, parent_id in parents.items():
        children.setdefault(parent_id, []).append(listed[run_id])
    for siblings in children.values():
        siblings.sort(key=_run_order)
    roots = sorted((s for s in listed.values() if s.run_id not in parents), key=_run_order)
    nodes = [_run_node(root, children, listed) for root in roots]
    # deleted between the two listings
    nodes += [(f'run {run_id}: no longer listed', []) for run_id in run_ids if run_id not in listed]
    return nodes


def _deleted_note(count: int) -> str:
    return f'{_plural(count, "deleted run")} not converted'


def print_mlflow_plan(source: MlflowStore, plan: Plan, destination: str, summaries: Dict[str, RunSummary],
                      out=None, deleted: Optional[Dict[str, int]] = None) -> None:
    """The dry run: experiments → runs (nested runs under their parent, with their counts) → artifacts
    that will be skipped. ``destination``: where they would go (``Destination.describe()``);
    ``deleted``: experiment id → deleted runs left out (without --include-deleted)."""
    out = out or sys.stdout
    deleted = deleted or {}
    listed = [summaries[r] for _, ids in plan for r in ids if r in summaries]
    total = {
        'metric': sum(s.metrics for s in listed), 'param': sum(s.params for s in listed),
        'artifact': sum(s.artifact_count for s in listed),
        'skipped': sum(len(s.skipped_artifacts) for s in listed),
    }
    title = (f'Plan for {redact.mask_uri(source.tracking_uri)} → {destination} '
             f'(dry run: nothing is written)\n'
             f'{_plural(len(plan), "experiment")}, {_plural(sum(len(ids) for _, ids in plan), "run")}: '
             f'{_plural(total["metric"], "metric")}, {_plural(total["param"], "param")}, '
             f'{_plural(total["artifact"], "artifact")} ({total["skipped"]:,} to skip)')
    if sum(deleted.values()):
        title += f'; {_deleted_note(sum(deleted.values()))} (--include-deleted converts them)'
    nodes = []
    for experiment, run_ids in plan:
        line = f'experiment {experiment.name!r} [id {experiment.experiment_id}]: {_plural(len(run_ids), "run")}'
        if deleted.get(experiment.experiment_id):
            line += f'; {_deleted_note(deleted[experiment.experiment_id])}'
        nodes.append((line, _experiment_runs(run_ids, summaries)))
    print_tree(title, nodes, out)
