"""Creating a new local Aim repo: atomically (safe when conversions race), and while the launcher loads.

A repo is never built in place. Its ``.aim`` directory is built in a staging directory beside it, on
the same filesystem (``.runferry-new-repo-*``, in the deepest directory of the path that exists), and
``os.rename``d into place (``install``): atomic, so a repo path shows either no ``.aim`` or a whole,
migrated one. When two commands create the same repo at once, one rename wins; the other finds the
winner's ``.aim`` in place, removes its own staging directory (which only it wrote) and uses the
winner's repo. Nothing else is ever deleted: not a repo, not a directory another process may write.
Aim keeps no absolute path inside ``.aim`` that it reads back (the SQLite URL and the RocksDB paths
are computed when a repo is opened): a renamed repo opens, writes and reads back as any other
(tests/test_repo_safety.py).

Creating an Aim repo takes about 2.5 s, nearly all of it Aim's schema migration: Aim runs ``python -m
alembic ... upgrade head`` as a subprocess, which starts Python and imports Aim again. The launcher
spends about 2 s importing Beam, on one core. So ``python -m pipelines.<name>`` calls ``start`` before
those imports: a new repo is built by Aim's own ``Repo(init=True)`` in a subprocess, on the other core,
in its staging directory, and ``pipelines.destinations.aim.check_repo_writable`` then takes it
(``claim``: waits for it and installs it) instead of creating the repo itself. That subprocess (``create``) runs the same alembic
command in its own interpreter, which has Aim loaded already: the creation takes ~0.4 s instead of
~2.5 s (measured; the SQLite schema and its alembic version are the same, tests/test_early_repo.py).
Not in the launcher: alembic's ``env.py`` reconfigures the logging of the process it runs in.

Only an exact ``--repo PATH``/``--repo=PATH`` naming a path that does not exist yet starts anything;
every other case (an existing path, ``aim://``, ``--dry-run``, ``--help``) is left to the usual check.
Until ``claim`` nothing but the staging directory exists: a repo built and never claimed (a usage
error, a dry run, a crash before the check) is removed with it at exit, so a failed command leaves
nothing behind (a ``kill -9`` can leave the hidden staging directory; nothing reads it).

Imports only the standard library: it runs before anything heavy is loaded.
"""
from __future__ import annotations

import atexit
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional

__all__ = ['EarlyRepo', 'start', 'repo_flag', 'create', 'create_repo', 'stage', 'install']

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CREATE = 'import sys; from pipelines.early_repo import create; create(sys.argv[1])'
_NOT_CONVERTING = {'-h', '--help', '--dry-run', '--dry_run'}
_AIM_DIR = '.aim'  # aim.sdk.configs.get_aim_repo_name(), which the launcher does not import
_STAGING_PREFIX = '.runferry-new-repo-'


def repo_flag(argv: List[str]) -> Optional[str]:
    """The value of the one exact ``--repo X`` or ``--repo=X`` in ``argv``; None if absent or repeated."""
    values = []
    for i, arg in enumerate(argv):
        if arg == '--repo' and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith('--repo='):
            values.append(arg[len('--repo='):])
    return values[0] if len(values) == 1 else None


def _first_missing(path: str) -> Optional[str]:
    """The outermost directory of ``path`` that does not exist (``path`` itself if only it is missing)."""
    missing = None
    while not os.path.lexists(path):
        missing = path
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _deepest_existing(path: str) -> str:
    """``path`` if it exists, else its nearest existing ancestor."""
    missing = _first_missing(path)
    return path if missing is None else os.path.dirname(missing)


def stage(path: str) -> str:
    """A new, empty staging directory for building the repo at ``path``, on its filesystem."""
    return tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=_deepest_existing(path))


def install(staging: str, path: str) -> bool:
    """Move the ``.aim`` built in ``staging`` to ``path`` (creating ``path`` if needed) with one atomic
    ``os.rename``, then remove ``staging``. True if this one was installed; False if ``path`` already
    held a repo (another command's, created meanwhile), which is then used as it is."""
    os.makedirs(path, exist_ok=True)
    try:
        os.rename(os.path.join(staging, _AIM_DIR), os.path.join(path, _AIM_DIR))
        installed = True
    except OSError as error:
        # a non-empty .aim is in place; ENOTDIR if .aim is a file: left for Aim to report when opened
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
            raise
        installed = False
    shutil.rmtree(staging, ignore_errors=True)  # only this process ever wrote in it
    return installed


def create_repo(path: str) -> bool:
    """Create the Aim repo at ``path`` with Aim's own ``Repo(init=True)``, built aside and installed
    atomically (see the module docstring). False if another command's repo took its place first."""
    from aim.sdk.repo import Repo

    staging = stage(path)
    try:
        Repo(staging, init=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return install(staging, path)


class EarlyRepo:
    """A repo being built in a subprocess, in its own staging directory; removed at exit unless claimed."""

    def __init__(self, path: str):
        self.path = path
        self.staging = stage(path)
        self.claimed = False
        # its output is not kept: a creation that fails is redone by the usual check, which reports why
        self._process = subprocess.Popen([sys.executable, '-c', _CREATE, self.staging], cwd=_ROOT,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(self.discard)

    def claim(self, repo: str) -> bool:
        """True if ``repo`` is the repo built here: once built (waited for), it is installed, or, if
        another command installed one there meanwhile, that one is used. False if ``repo`` is another
        path or the build failed (what it made is removed)."""
        if os.path.abspath(repo) == self.path and self._process.wait() == 0:
            install(self.staging, self.path)
            self.claimed = True
            return True
        self.discard()
        return False

    def discard(self) -> None:
        """Stop the build if it still runs and remove its staging directory, unless the repo was claimed."""
        if self.claimed:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        shutil.rmtree(self.staging, ignore_errors=True)


def start(argv: List[str]) -> Optional[EarlyRepo]:
    """Begin creating the repo ``argv`` names, if it is a new local path (see the module docstring)."""
    if _NOT_CONVERTING.intersection(argv):
        return None
    repo = repo_flag(argv)
    if not repo or not repo.strip() or '://' in repo:
        return None
    path = os.path.abspath(repo)
    created_root = _first_missing(path)
    if created_root is None:  # it exists: an existing repo, or a directory to check as usual
        return None
    parent = os.path.dirname(created_root)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        return None  # check_repo_writable reports it
    return EarlyRepo(path)


def create(staging: str) -> None:
    """Build an Aim repo in ``staging`` as ``Repo(staging, init=True)`` does, with Aim's schema
    migration run in this process (see the module docstring). Runs in the subprocess ``start`` makes."""
    import aim.storage.structured.db as aim_db
    from aim.sdk.repo import Repo
    from aim.storage.migrations.utils import create_migration_cmd

    def upgrade_database(db_url: str) -> None:  # Aim's, without a new interpreter
        import alembic.config

        command = create_migration_cmd()  # [python, '-m', 'alembic', '-c', INI, 'upgrade', 'head']
        if command[1:3] != ['-m', 'alembic']:
            raise RuntimeError(f'unexpected Aim migration command: {command}')
        os.environ['AIM_RUN_META_DATA_DB_URL'] = db_url  # what env.py reads, as in Aim's subprocess
        alembic.config.main(argv=command[3:])

    aim_db.upgrade_database = upgrade_database
    Repo(staging, init=True)
