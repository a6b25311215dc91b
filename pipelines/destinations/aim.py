"""The Aim destination: runs written into an Aim repo, local (a path), remote (``aim://HOST:PORT``) or on
object storage (``gs://…``, ``s3://…``, any fsspec URL: ``transforms.aim_bucket_write``).

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

from connectors import redact
from connectors.aim_bucket import BucketError, check_protocol, is_bucket_url
from connectors.aim_version import check_setting
from connectors.redact import mask_text, mask_uri
from pipelines.common import UsageError, parse_json_flag
from pipelines.seam import Destination
from transforms.aim_bucket_write import WriteToAimBucket
from transforms.aim_write import WriteToAim

__all__ = ['AimDestination', 'check_repo_writable', 'check_bucket_repo', 'default_skipped_path', 'bucket_report_lines']

REMOTE_SCHEME = 'aim://'


class AimDestination(Destination):
    """An Aim repo (``--repo``)."""

    def __init__(self, repo: str, storage_options: Optional[Dict[str, Any]] = None):
        self.repo = repo.rstrip('/') if is_bucket_url(repo) else repo
        self.storage_options = dict(storage_options or {})  # the bucket repo's filesystem's

    @property
    def on_bucket(self) -> bool:
        return is_bucket_url(self.repo)

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--repo', required=True,
                            help='Aim repo: a local path (created if missing), aim://HOST:PORT, or a prefix on '
                                 'object storage (gs://BUCKET/PATH, s3://BUCKET/PATH, any fsspec URL)')
        parser.add_argument('--repo-storage-options', '--repo_storage_options', dest='repo_storage_options',
                            help='JSON object passed to fsspec for a --repo on object storage (e.g. '
                                 '{"token": "anon"})')

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> 'AimDestination':
        if not args.repo.strip():
            raise UsageError('--repo is empty')
        options = parse_json_flag('--repo-storage-options', getattr(args, 'repo_storage_options', None))
        redact.remember(redact.secrets_of_uri(args.repo) | redact.secrets_of_options(options))
        if options and not is_bucket_url(args.repo):
            raise UsageError(f'--repo-storage-options applies to a --repo on object storage, not {mask_uri(args.repo)}')
        if is_bucket_url(args.repo):
            try:
                check_protocol(args.repo)
            except BucketError as error:
                raise UsageError(str(error)) from None
        return cls(args.repo, options)

    def check(self, early: Any = None) -> None:
        try:  # RUNFERRY_AIM_WRITE_PATH (connectors.aim_version): a bad value stops here, not in a worker
            check_setting()
        except ValueError as error:
            raise UsageError(str(error)) from None
        if self.on_bucket:
            check_bucket_repo(self.repo, self.storage_options)
        else:
            check_repo_writable(self.repo, early)

    def describe(self) -> str:
        return f'Aim repo {mask_uri(self.repo)}'

    def default_skipped_path(self) -> str:
        return default_skipped_path(self.repo)

    def write(self, progress=None) -> beam.PTransform:
        if self.on_bucket:
            return WriteToAimBucket(self.repo, self.storage_options, progress)
        return WriteToAim(self.repo, progress)

    def report_lines(self, counters: Dict[str, int]) -> List[str]:
        repo = mask_text(self.repo)
        if self.on_bucket:
            return bucket_report_lines(repo, counters)
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
    if repo.startswith(REMOTE_SCHEME) or is_bucket_url(repo):
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
        from connectors.aim_remote import ServerUnusable, check_server
        try:
            check_server(repo)
        except ServerUnusable as error:
            raise UsageError(str(error)) from None
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


def check_bucket_repo(repo: str, storage_options: Dict[str, Any]) -> None:
    """A repo on object storage: reachable, made an Aim repo if it is not one yet (before any work), and
    written on the storage path (its runs' rows and index are built from the records that path keeps)."""
    from connectors.aim_bucket import BucketRepo
    from connectors.aim_bucket_index import create_bucket_repo
    from connectors.aim_version import write_path

    chosen = write_path()
    if chosen.through_api:
        raise UsageError(f'--repo {mask_uri(repo)}: a repo on object storage is written on the storage path only '
                         f'({chosen.warning})')
    try:
        create_bucket_repo(BucketRepo(repo, storage_options))
    except Exception as error:  # the bucket missing, credentials refused, the endpoint unreachable
        reason = mask_text(' '.join(str(error).split()) or type(error).__name__)
        raise UsageError(f'--repo {mask_uri(repo)} cannot be used as an Aim repo: {type(error).__name__}: '
                         f'{reason}') from None


# how to copy a prefix down, by protocol: {SRC} the repo's URL, {DIR} a local directory
_COPY_DOWN = {'gs': 'gcloud storage rsync --recursive {SRC} {DIR}', 'gcs': 'gcloud storage rsync --recursive {SRC} {DIR}',
              's3': 'aws s3 sync {SRC} {DIR}', 's3a': 'aws s3 sync {SRC} {DIR}'}


def bucket_report_lines(repo: str, counters: Dict[str, int]) -> List[str]:
    """Where the repo is and how to view it (``repo`` already masked)."""
    lines = []
    unchanged = counters.get('runs_unchanged')
    if unchanged:
        lines.append(f'  {unchanged:,} run(s) already in {repo}, equal: not uploaded again')
    if counters.get('runs_written'):
        protocol = repo.split('://', 1)[0]
        directory = 'aim-repo'
        copy = _COPY_DOWN.get(protocol)
        lines.append(f'Aim repo on object storage: {repo}')
        if copy:
            lines.append(f'View the result: {copy.format(SRC=repo, DIR=directory)} && aim up --repo {directory}')
        else:
            lines.append(f'View the result: copy {repo} (with its .aim) to a directory DIR, then aim up --repo DIR')
    return lines
