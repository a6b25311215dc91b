"""The W&B source: a directory (a local path or any fsspec URL) whose ``.wandb`` run files become runs.

Its flags (``--wandb-dir``, ``--wandb-project``, ``--storage-options``), its plan (the directory listed once:
every ``run-<id>.wandb`` below it, offline and synced run directories alike, grouped by run id so a
resumed run's files are one run; ``transforms.wandb.plan_wandb_runs``), its warning (the files under W&B's
``latest-run`` link, the same files again, are passed over), its dry run (runs → files) and its read
(``transforms.wandb.ReadWandb``).
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Optional

import apache_beam as beam

from connectors import redact
from connectors.event_files import EventFileSource, SourceError
from pipelines.common import UsageError, parse_json_flag
from pipelines.report import Tree, plural, print_tree
from pipelines.seam import Destination, Source
from transforms.wandb import ReadWandb, WandbPlan, plan_wandb_runs

__all__ = ['WandbSource']


class WandbSource(Source):
    """A directory of W&B runs (``--wandb-dir``)."""

    DRY_RUN_HELP = 'print the plan (runs and their .wandb files); write nothing'

    def __init__(self, wandb_dir: str, storage_options: Dict, projects: Optional[List[str]], chunk_points: int):
        self.files = EventFileSource(wandb_dir, storage_options)
        self.projects = projects
        self.chunk_points = chunk_points
        self.runs: Optional[WandbPlan] = None

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--wandb-dir', '--wandb_dir', dest='wandb_dir', required=True,
                            help='directory holding W&B run directories (wandb/offline-run-*, wandb/run-*) at any '
                                 'depth: a local path or any fsspec URL')
        # not --project: Beam's GoogleCloudOptions (and Dataflow's launcher) pass --project, the Google Cloud project
        parser.add_argument('--wandb-project', '--wandb_project', action='append', dest='wandb_projects',
                            metavar='NAME', help='convert only the runs of this W&B project (repeatable; default: '
                                                 'every run)')
        parser.add_argument('--storage-options', '--storage_options', dest='storage_options',
                            help='JSON object passed to fsspec (e.g. {"anon": true})')
        parser.add_argument('--chunk-points', '--chunk_points', dest='chunk_points', type=int, default=100_000,
                            help=argparse.SUPPRESS)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> 'WandbSource':
        if not args.wandb_dir.strip():
            raise UsageError('--wandb-dir is empty')
        for project in args.wandb_projects or ():
            if not project.strip():
                raise UsageError('--wandb-project is empty')
        args.storage_options = parse_json_flag('--storage-options', args.storage_options)
        redact.remember(redact.secrets_of_options(args.storage_options))
        return cls(args.wandb_dir, args.storage_options, args.wandb_projects, args.chunk_points)

    def plan(self) -> None:
        """List the directory once; one without any ``.wandb`` run file is a usage error."""
        try:
            found = self.files.list_files()
        except SourceError as error:
            raise UsageError(str(error)) from None
        self.runs = plan_wandb_runs(found)
        if not self.runs.runs:
            raise UsageError(f'{self.files.logdir} holds no W&B run files (run-<id>.wandb)')

    @property
    def runs_total(self) -> int:
        return len(self.runs.runs)

    @property
    def files_total(self) -> int:
        return self.runs.files_total

    def warn(self) -> None:
        if self.runs.linked:
            self.log.info("passing over %s under W&B's latest-run link (the same files as in their run "
                          'directories)', plural(len(self.runs.linked), '.wandb file'))
        if self.projects:
            self.log.info('converting only the runs of W&B project(s) %s; the others are counted as runs_filtered',
                          ', '.join(self.projects))

    def print_plan(self, destination: Destination, out=None) -> None:
        files = self.runs.files_total
        only = f', project(s) {", ".join(self.projects)} only' if self.projects else ''
        title = (f'Plan for {redact.mask_text(self.files.logdir)} → {destination.describe()} (dry run: nothing is '
                 f'written)\n{plural(len(self.runs.runs), "run")}, {plural(files, ".wandb file")}{only}'
                 ' (experiment: each run\'s W&B project)')
        nodes: List[Tree] = [(f'run {run_id}' + (' (resumed: its files merge)' if len(paths) > 1 else ''),
                              [(path, []) for path in paths])
                             for run_id, paths in sorted(self.runs.runs.items())]
        if self.runs.linked:
            nodes.append((f"passed over (under W&B's latest-run link): {len(self.runs.linked):,}",
                          [(path, []) for path in self.runs.linked]))
        print_tree(title, nodes, out)

    def read(self, progress=None) -> beam.PTransform:
        return ReadWandb(self.files, self.runs, self.projects, self.chunk_points, progress)

    def counters(self) -> Dict[str, int]:
        return {'files_ignored': len(self.runs.linked)}

    def nothing_written(self, skipped_path: str) -> Optional[str]:
        if self.projects:
            return (f'no run written from {self.files.logdir}: none of its {plural(self.runs_total, "run")} is in '
                    f'project(s) {", ".join(self.projects)}, or none could be read or written (the reasons are in '
                    f'{skipped_path})')
        return (f'no run written although {self.files.logdir} holds {plural(self.runs_total, "W&B run")}: none '
                f'could be read or written (the reasons are in {skipped_path})')
