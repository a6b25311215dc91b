"""Which files of a W&B directory are runs: a pure function over a listing (``plan_wandb_runs``).

Every W&B run leaves ``run-<id>.wandb`` in its run directory (``wandb/offline-run-<time>-<id>/`` offline,
``wandb/run-<time>-<id>/`` synced). The run id names the run, so a resumed run's files, in several run
directories, are one run; its files are listed in the order of their directories' times (the reader
reorders them by their run records' start). W&B's ``latest-run`` link holds the same files again.
"""
from __future__ import annotations

import collections
import posixpath
import re
from typing import Dict, Iterable, List, Tuple

__all__ = ['WandbPlan', 'plan_wandb_runs', 'is_wandb_file']

# W&B's own symbolic links to the newest run directory: the same files again
_LINKS = ('latest-run',)
_RUN_FILE = re.compile(r'^run-(?P<id>[^/]+)\.wandb$')
_DIR_TIME = re.compile(r'(\d{8}_\d{6})')


def is_wandb_file(path: str) -> bool:
    return _RUN_FILE.match(posixpath.basename(path)) is not None


class WandbPlan:
    """The runs of a listing: run id → its ``.wandb`` files (relative paths, in the order they were
    written); and the files passed over (under W&B's ``latest-run`` link: the same files again)."""

    def __init__(self, runs: Dict[str, List[str]], linked: List[str]):
        self.runs = runs
        self.linked = linked

    @property
    def files_total(self) -> int:
        return sum(len(files) for files in self.runs.values())


def _written_order(path: str) -> Tuple[str, str]:
    """A run directory is ``[offline-]run-<YYYYMMDD_HHMMSS>-<id>``: its time orders a resumed run's files."""
    directory = posixpath.basename(posixpath.dirname(path))
    found = _DIR_TIME.search(directory)
    return (found.group(1) if found else '', path)


def plan_wandb_runs(listing: Iterable[str]) -> WandbPlan:
    """Relative paths of every file under the W&B directory → the runs to read (a pure function)."""
    runs: Dict[str, List[str]] = collections.defaultdict(list)
    linked = []
    for path in listing:
        match = _RUN_FILE.match(posixpath.basename(path))
        if match is None:
            continue
        if any(part in _LINKS for part in path.split('/')[:-1]):
            linked.append(path)
            continue
        runs[match.group('id')].append(path)
    return WandbPlan({run_id: sorted(files, key=_written_order) for run_id, files in sorted(runs.items())},
                     sorted(linked))
