"""Which directories of a TensorBoard logdir are runs, groups and contexts, under three layouts.

``aim`` (the default) follows Aim's documented converter rules, resolved the way ``aim convert
tensorboard`` resolves them (``aim/cli/convert/processors/tensorboard.py``), so users get the runs
they know:

* every directory that directly holds an event file is a *candidate*; candidates are visited deepest
  first (ties by path, so any listing order gives the same plan);
* a candidate at depth 1 is a run;
* a deeper candidate is a *context*: its parent becomes the run and its grandparent a group; if that
  parent is already a group, the candidate is a run itself;
* a candidate that is a group (or the logdir itself) holds "unorganized" event files: they are
  ignored. One exception, where Aim's converter writes nothing: a logdir that holds event files and
  no directory below it does is itself a run (``tensorboard --logdir`` shows it as one run).

``flat`` is Aim's ``--flat`` rule: the same, except that every deeper candidate is a run and its
parent a group (so a run directory's own event files beside its context directories are ignored).

``tensorboard`` is TensorBoard's own run list: every candidate is a run, named by its path; no
groups, no contexts, nothing ignored.

Where ``aim convert`` walks each run recursively and can put one file in two runs, here each event
file goes to exactly one place: the run it sits in (no context), else the run its directory sits in
(context = its directory's name), else it is ignored.

Paths are relative POSIX paths below the logdir; ``''`` is the logdir itself, a run named after the
logdir (``run_name``).
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
from typing import Dict, Iterable, List, Optional, Tuple

from connectors.event_files import is_event_file

__all__ = ['EventFileAssignment', 'Plan', 'classify', 'is_event_file', 'non_event_kind', 'run_name',
           'look_like_runs', 'LAYOUTS', 'AIM', 'FLAT', 'TENSORBOARD']

AIM, FLAT, TENSORBOARD = 'aim', 'flat', 'tensorboard'
LAYOUTS = (AIM, FLAT, TENSORBOARD)


@dataclasses.dataclass(frozen=True, order=True)
class EventFileAssignment:
    run: str
    context: Optional[str]
    path: str


@dataclasses.dataclass
class Plan:
    # run dir -> context (None: directly in the run) -> sorted event file paths
    runs: Dict[str, Dict[Optional[str], List[str]]]
    ignored: List[str]
    # files that are not event files, by kind (``non_event_kind``) -> sorted paths: nothing converts them
    not_converted: Dict[str, List[str]] = dataclasses.field(default_factory=dict)

    def assignments(self) -> List[EventFileAssignment]:
        return [
            EventFileAssignment(run, context, path)
            for run, contexts in sorted(self.runs.items())
            for context, paths in sorted(contexts.items(), key=lambda kv: (kv[0] is not None, kv[0] or ''))
            for path in paths
        ]


def _depth(directory: str) -> int:
    return 0 if directory == '' else directory.count('/') + 1


def _parent(directory: str) -> str:
    return posixpath.dirname(directory)


def _resolve_runs(candidates: Iterable[str], flat: bool) -> Tuple[set, set]:
    candidates = set(candidates)
    if candidates == {''}:  # the logdir alone holds event files: it is the run
        return {''}, set()
    runs, groups, ignored = set(), set(), set()
    for candidate in sorted(candidates, key=lambda d: (-_depth(d), d)):
        if candidate in runs:
            continue
        if candidate in groups:
            ignored.add(candidate)
            continue
        depth = _depth(candidate)
        if depth == 0:
            ignored.add(candidate)
            continue
        if depth == 1:
            runs.add(candidate)
            continue
        if flat:
            groups.add(_parent(candidate))
            runs.add(candidate)
        else:
            run = _parent(candidate)
            groups.add(_parent(run))
            runs.add(candidate if run in groups else run)
    return runs, ignored


# the kinds of files TensorBoard logdirs hold besides event files, first match wins: (kind, test on the
# lower-cased base name and path)
_NON_EVENT_KINDS = (
    ('profile', lambda name, path: '/plugins/profile/' in f'/{path}'
     or name.endswith(('.xplane.pb', '.trace.json.gz'))),
    ('projector', lambda name, path: name == 'projector_config.pbtxt' or name.endswith('.tsv')
     or name.startswith('sprite')),
    ('hparams file', lambda name, path: name in ('hparams.yaml', 'hparams.yml', 'hparams.json')),
    ('checkpoint or model', lambda name, path: name == 'checkpoint' or '.data-' in name or name.endswith(
        ('.ckpt', '.pt', '.pth', '.h5', '.hdf5', '.keras', '.safetensors', '.index', '.pb', '.bin'))),
)


def non_event_kind(path: str) -> str:
    """What a file that is not an event file holds, by its name: ``projector`` (embeddings:
    ``projector_config.pbtxt``, ``.tsv``, sprites), ``hparams file`` (Lightning's ``hparams.yaml``),
    ``checkpoint or model``, ``profile`` (the profiler plugin's traces) or ``other``."""
    name = posixpath.basename(path).lower()
    return next((kind for kind, test in _NON_EVENT_KINDS if test(name, path.lower())), 'other')


def classify(files: Iterable[str], layout: str = AIM) -> Plan:
    """Sort relative event-file paths into runs and contexts by ``layout``; the rest is ignored. Other
    files in ``files`` go to ``not_converted``, by kind."""
    if layout not in LAYOUTS:
        raise ValueError(f'unknown layout {layout!r} (one of {", ".join(LAYOUTS)})')
    all_files = sorted({f.strip('/') for f in files})
    not_converted: Dict[str, List[str]] = {}
    for path in all_files:
        if not is_event_file(path):
            not_converted.setdefault(non_event_kind(path), []).append(path)
    files = [f for f in all_files if is_event_file(f)]
    if layout == TENSORBOARD:
        runs, ignored_dirs = set(_parent(f) for f in files), set()
    else:
        runs, ignored_dirs = _resolve_runs((_parent(f) for f in files), flat=layout == FLAT)
    plan: Dict[str, Dict[Optional[str], List[str]]] = {}
    ignored: List[str] = []
    for path in files:
        directory = _parent(path)
        if directory in ignored_dirs:
            ignored.append(path)
        elif directory in runs:
            plan.setdefault(directory, {}).setdefault(None, []).append(path)
        elif _parent(directory) in runs:
            plan.setdefault(_parent(directory), {}).setdefault(posixpath.basename(directory), []).append(path)
        else:
            ignored.append(path)
    return Plan(runs=plan, ignored=ignored, not_converted=not_converted)


def run_name(run: str, logdir: str) -> str:
    """A run's Aim name: its directory relative to the logdir; the logdir itself is named by its base name."""
    return run or posixpath.basename(logdir.rstrip('/')) or logdir


# a directory name that numbers one of several runs: version_0 (Lightning), seed_1, trial-2, fold3,
# run=4, or a timestamp like tensorboardX's add_hparams subdirectories (1700000000.123)
_NUMBERED = re.compile(r'^(?P<prefix>[A-Za-z][A-Za-z_-]*?)[_=-]?\d+$|^(?P<stamp>\d{9,}(\.\d+)?)$')


def _series_prefix(name: str) -> Optional[str]:
    match = _NUMBERED.match(name)
    if not match:
        return None
    return match.group('prefix') if match.group('prefix') is not None else '<timestamp>'


def look_like_runs(plan: Plan) -> Dict[str, List[str]]:
    """Runs whose context directories look like separate runs: {run: [those contexts]}.

    Read from names alone (no event file is opened at plan time, which on a bucket of thousands of
    runs would cost a read each): two or more contexts numbered in one series (``version_0``,
    ``version_1``; ``seed_1``, ``seed_2``; or timestamps), as Lightning's ``TensorBoardLogger``, seed
    sweeps and tensorboardX's ``add_hparams`` name their runs. Train/validation contexts never match."""
    found: Dict[str, List[str]] = {}
    for run, contexts in sorted(plan.runs.items()):
        series: Dict[str, List[str]] = {}
        for context in contexts:
            prefix = _series_prefix(context) if context is not None else None
            if prefix is not None:
                series.setdefault(prefix, []).append(context)
        numbered = sorted(c for members in series.values() if len(members) > 1 for c in members)
        if numbered:
            found[run] = numbered
    return found
