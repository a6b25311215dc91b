"""The TensorBoard source: a logdir (a local path or any fsspec URL) whose event files become runs.

Its flags (``--logdir``, ``--layout``/``--flat``, ``--experiment``, ``--storage-options``), its plan (the
logdir listed once and classified into runs and contexts, ``transforms.classify``), its warnings (files
left out; directories Aim's rules merge), its dry run (a tree of runs → contexts → files) and its read
(``transforms.tensorboard.ReadTensorBoard``).
"""
from __future__ import annotations

import argparse
import posixpath
import urllib.parse
from typing import Dict, List, Optional

import apache_beam as beam

from connectors import redact
from connectors.event_files import EventFileSource, SourceError, is_event_file
from pipelines.common import UsageError, parse_json_flag
from pipelines.report import NOT_CONVERTED, Tree, plural, print_tree
from pipelines.seam import Destination, Source
from transforms.classify import AIM, FLAT, LAYOUTS, TENSORBOARD, Plan, classify, look_like_runs, run_name
from transforms.tensorboard import ReadTensorBoard

__all__ = ['TensorBoardSource', 'resolve_layout', 'default_experiment', 'print_tensorboard_plan']


class TensorBoardSource(Source):
    """A TensorBoard logdir (``--logdir``)."""

    DRY_RUN_HELP = 'print the plan (runs, contexts, files, ignored files, files not converted); write nothing'

    def __init__(self, logdir: str, storage_options: Dict, layout: str, experiment: str, chunk_points: int):
        self.files = EventFileSource(logdir, storage_options)
        self.layout = layout
        self.experiment = experiment
        self.chunk_points = chunk_points
        self.listing: List[str] = []  # the event files, relative to the logdir (after ``plan``)
        self.classified: Optional[Plan] = None

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--logdir', required=True, help='TensorBoard logdir: a local path or any fsspec URL')
        parser.add_argument('--layout', metavar='{' + ','.join(LAYOUTS) + '}',  # checked by from_args: one line
                            help="how directories become runs: aim (default: Aim's converter rules), flat (Aim's "
                                 "--flat rule), tensorboard (every directory holding event files is a run)")
        parser.add_argument('--flat', action='store_true',
                            help="Aim's --flat rule: every directory holding event files below depth 1 is a run, "
                                 "its parent a group (same as --layout flat)")
        parser.add_argument('--experiment', help="Aim experiment of the runs (default: the logdir's base name)")
        parser.add_argument('--storage-options', '--storage_options', dest='storage_options',
                            help='JSON object passed to fsspec (e.g. {"anon": true})')
        parser.add_argument('--chunk-points', '--chunk_points', dest='chunk_points', type=int, default=100_000,
                            help=argparse.SUPPRESS)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> 'TensorBoardSource':
        """Also resolves ``args`` in place: ``storage_options`` parsed, ``layout`` and ``experiment``
        with their defaults (what the command will do, for whoever reads ``args``)."""
        if not args.logdir.strip():
            raise UsageError('--logdir is empty')
        args.storage_options = parse_json_flag('--storage-options', args.storage_options)
        args.layout = resolve_layout(args.layout, args.flat)
        redact.remember(redact.secrets_of_options(args.storage_options))
        if args.experiment is None:
            args.experiment = default_experiment(args.logdir)
        return cls(args.logdir, args.storage_options, args.layout, args.experiment, args.chunk_points)

    def plan(self) -> None:
        """List the logdir once and classify it; a logdir with no event file is a usage error."""
        try:
            found = self.files.list_files()
        except SourceError as error:
            raise UsageError(str(error)) from None
        self.listing = [path for path in found if is_event_file(path)]
        if not self.listing:
            raise UsageError(f'logdir {self.files.logdir} holds no event files (no file name contains "tfevents")')
        self.classified = classify(found, self.layout)

    @property
    def runs_total(self) -> int:
        return len(self.classified.runs)

    @property
    def files_total(self) -> int:
        return len(self.classified.assignments())

    def warn(self) -> None:
        plan = self.classified
        if plan.ignored:
            listed = ', '.join(self.files.url(p) for p in plan.ignored)
            self.log.warning('ignoring %d unorganized event file(s) (not in a run directory; --layout %s converts '
                             'every directory holding event files as a run): %s', len(plan.ignored), TENSORBOARD,
                             listed)
        if self.layout == TENSORBOARD:
            return
        for run, contexts in look_like_runs(plan).items():  # Aim's rules merge them into one run
            self.log.warning('run %s: its context directories %s look like separate runs (numbered siblings), '
                             "which Aim's rules merge into one run; --layout %s converts each as its own run",
                             run_name(run, self.files.logdir), ', '.join(contexts), TENSORBOARD)

    def print_plan(self, destination: Destination, out=None) -> None:
        print_tensorboard_plan(self.files, self.classified, self.experiment, out)

    def read(self, progress=None) -> beam.PTransform:
        return ReadTensorBoard(self.files, self.listing, self.experiment, self.layout, self.chunk_points, progress)

    def counters(self) -> Dict[str, int]:
        """Files ignored (unorganized), and files that are not event files by kind
        (``files_not_converted:<kind>``)."""
        counters = {'files_ignored': len(self.classified.ignored)}
        counters.update({f'{NOT_CONVERTED}:{kind}': len(paths)
                         for kind, paths in self.classified.not_converted.items()})
        return counters

    def nothing_written(self, skipped_path: str) -> Optional[str]:
        """A logdir holding event files gave no run: always worth one line (and exit status 1)."""
        return (f'no run written although {self.files.logdir} holds {len(self.listing)} event file(s): none of its '
                f'runs could be read or written (the reasons are in {skipped_path})')


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


def print_tensorboard_plan(source: EventFileSource, plan: Plan, experiment: str, out=None) -> None:
    """The dry run: runs → contexts → event files, then the ignored (unorganized) files and the files
    that are not event files, by kind."""
    files = sum(len(f) for c in plan.runs.values() for f in c.values())
    contexts = sum(len(c) for c in plan.runs.values())
    title = (f'Plan for {redact.mask_text(source.logdir)} → Aim experiment {experiment!r} (dry run: nothing is '
             f'written)\n'
             f'{plural(len(plan.runs), "run")}, {plural(contexts, "context")}, {plural(files, "event file")}, '
             f'{len(plan.ignored):,} ignored')
    nodes: List[Tree] = []
    for run, run_contexts in sorted(plan.runs.items()):
        context_nodes = []
        for context, paths in sorted(run_contexts.items(), key=lambda kv: (kv[0] is not None, kv[0] or '')):
            label = f'context {context}' if context is not None else 'no context (files in the run directory)'
            context_nodes.append((f'{label}: {plural(len(paths), "file")}', [(path, []) for path in paths]))
        nodes.append((f'run {run_name(run, source.logdir)}', context_nodes))
    if plan.ignored:
        nodes.append((f'ignored (unorganized event files, not in a run directory): {len(plan.ignored):,}',
                      [(path, []) for path in plan.ignored]))
    if plan.not_converted:
        nodes.append((f'not converted (not event files): {sum(len(p) for p in plan.not_converted.values()):,}',
                      [(f'{kind}: {plural(len(paths), "file")}', [(path, []) for path in paths])
                       for kind, paths in sorted(plan.not_converted.items())]))
    print_tree(title, nodes, out)
