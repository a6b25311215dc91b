"""The Aim destination: runs written into an Aim repo, local (a path) or remote (``aim://HOST:PORT``).

It owns what only Aim needs: the ``--repo`` flag, the check that the repo can be written (created
atomically if missing, possibly by the launcher's early start, ``pipelines.early_repo``), the dead
letters' default place beside a local repo, the write with its final index step
(``transforms.aim_write.WriteToAim``) and its report lines (how to view the result, runs left for
another process to index).
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional

import apache_beam as beam

from connectors.redact import mask_text, mask_uri
from pipelines.common import UsageError
from pipelines.seam import Destination
from transforms.aim_write import WriteToAim

__all__ = ['AimDestination', 'check_repo_writable', 'default_skipped_path']

REMOTE_SCHEME = 'aim://'


class AimDestination(Destination):
    """An Aim repo (``--repo``)."""

    def __init__(self, repo: str):
        self.repo = repo

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--repo', required=True,
                            help='Aim repo: a local path (created if missing) or aim://HOST:PORT')

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> 'AimDestination':
        if not args.repo.strip():
            raise UsageError('--repo is empty')
        return cls(args.repo)

    def check(self, early: Any = None) -> None:
        check_repo_writable(self.repo, early)

    def describe(self) -> str:
        return f'Aim repo {mask_uri(self.repo)}'

    def default_skipped_path(self) -> str:
        return default_skipped_path(self.repo)

    def write(self, progress=None) -> beam.PTransform:
        return WriteToAim(self.repo, progress)

    def report_lines(self, counters: Dict[str, int]) -> List[str]:
        repo = mask_text(self.repo)
        lines = []
        if counters.get('runs_index_deferred'):
            index = os.path.join(os.path.abspath(repo), '.aim', 'meta', 'index')
            lines.append(f'  {counters["runs_index_deferred"]:,} run(s) written but not yet indexed: {index} stayed '
                         f'locked by another process (an `aim up` on the repo indexes them itself; else run `aim '
                         f'storage reindex`)')
        if not repo.startswith(REMOTE_SCHEME) and counters.get('runs_written'):  # an empty repo is nothing to view
            lines.append(f'View the result: aim up --repo {repo}')
        return lines

    def report_fields(self) -> Dict[str, Any]:
        return {'repo': mask_text(self.repo)}


def default_skipped_path(repo: str) -> str:
    """Dead letters go beside a local repo (``REPO.skipped.jsonl``), or in the working directory."""
    if repo.startswith(REMOTE_SCHEME):
        return os.path.abspath('runferry-skipped.jsonl')
    return os.path.abspath(repo.rstrip('/')) + '.skipped.jsonl'


# What a conversion writes in a local repo's .aim: run data, run locks, the index, the SQLite props
# (SQLite also needs its directory, for its journal). Each must be writable, or creatable in its parent.
_REPO_WRITES = ('.', 'run_metadata.sqlite', 'locks', 'meta', 'meta/chunks', 'meta/index', 'seqs', 'seqs/chunks')


def check_repo_writable(repo: str, early=None) -> None:
    """A local repo must be creatable/writable; a remote one must answer (checked by the sink module).
    ``early`` (a ``pipelines.early_repo.EarlyRepo``) is a repo already being created for this command:
    if it is this one and it was created, it is taken as is.

    A new local repo is created atomically (``pipelines.early_repo.create_repo``), so conversions
    racing to create it share one repo. An existing one is opened without taking any lock (not the
    index's: another conversion, or ``aim up``, may hold it), and every part a conversion writes is
    checked writable here, before any work (``_unwritable_part``)."""
    if repo.startswith(REMOTE_SCHEME):
        from connectors.aim_remote import check_server
        check_server(repo)
        return
    path = os.path.abspath(repo)
    try:
        built_early = early is not None and early.claim(repo)
    except OSError as error:
        raise UsageError(f'--repo {repo} cannot be created: {error}') from None
    if not built_early:
        _check_creatable(repo, path)
        _create_or_open(repo, path)
    unwritable = _unwritable_part(os.path.join(path, '.aim'))
    if unwritable:
        raise UsageError(f'--repo {repo} is not writable: {unwritable} is read-only')


def _check_creatable(repo: str, path: str) -> None:
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise UsageError(f'--repo {repo} is not writable ({probe} is not a writable directory)')


def _create_or_open(repo: str, path: str) -> None:
    """Create the repo (atomically) if it has no ``.aim`` yet; then open it as Aim does, with no lock."""
    from connectors.aim_sink import open_repo
    from pipelines.early_repo import create_repo

    if not os.path.lexists(os.path.join(path, '.aim')):
        try:
            create_repo(path)  # created here, once, so that workers never race to initialize it
        except Exception as error:
            raise UsageError(f'--repo {repo} cannot be created as an Aim repo: {error}') from None
    try:
        open_repo(repo, create=False)
    except Exception as error:
        raise UsageError(f'--repo {repo} cannot be opened as an Aim repo: {error}') from None


def _unwritable_part(aim_dir: str) -> Optional[str]:
    """The first part of the repo a conversion writes that it could not write, or None. ``os.access``
    tells, even for root: a read-only mount (EROFS) and an immutable file (``chattr +i``, EPERM) are
    refused to root as to anyone; for others, permission bits too."""
    for part in _REPO_WRITES:
        target = os.path.normpath(os.path.join(aim_dir, part))
        while not os.path.lexists(target):
            target = os.path.dirname(target)  # created when first written: its directory must be writable
        mode = os.W_OK | (os.X_OK if os.path.isdir(target) else 0)
        if not os.access(target, mode):
            return target
    return None
