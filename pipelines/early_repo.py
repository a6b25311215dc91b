"""Creating a new local Aim repo while the launcher's modules load.

Creating an Aim repo takes about 2.5 s, nearly all of it Aim's schema migration: Aim runs ``python -m
alembic ... upgrade head`` as a subprocess, which starts Python and imports Aim again. The launcher
spends about 2 s importing Beam, on one core. So ``python -m pipelines.<name>`` calls ``start`` before
those imports: a new repo is created by Aim's own ``Repo.from_path(init=True)`` in a subprocess, on the
other core, and ``check_repo_writable`` then takes it (``claim``) instead of creating the repo itself.
That subprocess (``create``) runs the same alembic command in its own interpreter, which has Aim
loaded already: the creation takes ~0.4 s instead of ~2.5 s (measured; the SQLite schema and its
alembic version are the same, tests/test_early_repo.py). Not in the launcher: alembic's ``env.py``
reconfigures the logging of the process it runs in.

Only an exact ``--repo PATH``/``--repo=PATH`` naming a path that does not exist yet starts anything;
every other case (an existing path, ``aim://``, ``--dry-run``, ``--help``) is left to the usual check.
A repo created here and never claimed (a usage error, a dry run, a crash before the check) is removed
at exit, with any parent directories it created, so a failed command leaves nothing behind.

Imports only the standard library: it runs before anything heavy is loaded.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
from typing import List, Optional

__all__ = ['EarlyRepo', 'start', 'repo_flag', 'create']

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CREATE = 'import sys; from pipelines.early_repo import create; create(sys.argv[1])'
_NOT_CONVERTING = {'-h', '--help', '--dry-run', '--dry_run'}


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


class EarlyRepo:
    """A repo being created in a subprocess; removed at exit unless claimed."""

    def __init__(self, path: str, created_root: str):
        self.path = path
        self.created_root = created_root  # the outermost directory this creation makes
        self.claimed = False
        # its output is not kept: a creation that fails is redone by the usual check, which reports why
        self._process = subprocess.Popen([sys.executable, '-c', _CREATE, path], cwd=_ROOT,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(self.discard)

    def claim(self, repo: str) -> bool:
        """True if the repo at ``repo`` was created here (waiting for it); it is then kept. False if
        ``repo`` is another path or the creation failed (what it made is removed)."""
        if os.path.abspath(repo) == self.path and self._process.wait() == 0:
            self.claimed = True
            return True
        self.discard()
        return False

    def discard(self) -> None:
        """Stop the creation if it still runs and remove what it made, unless the repo was claimed."""
        if self.claimed:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        shutil.rmtree(self.created_root, ignore_errors=True)


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
    return EarlyRepo(path, created_root)


def create(path: str) -> None:
    """Create the Aim repo at ``path`` as ``Repo.from_path(path, init=True)`` does, with Aim's schema
    migration run in this process (see the module docstring). Runs in the subprocess ``start`` makes."""
    import aim.storage.structured.db as aim_db
    from aim.storage.migrations.utils import create_migration_cmd

    from connectors.aim_sink import open_repo

    def upgrade_database(db_url: str) -> None:  # Aim's, without a new interpreter
        import alembic.config

        command = create_migration_cmd()  # [python, '-m', 'alembic', '-c', INI, 'upgrade', 'head']
        if command[1:3] != ['-m', 'alembic']:
            raise RuntimeError(f'unexpected Aim migration command: {command}')
        os.environ['AIM_RUN_META_DATA_DB_URL'] = db_url  # what env.py reads, as in Aim's subprocess
        alembic.config.main(argv=command[3:])

    aim_db.upgrade_database = upgrade_database
    open_repo(path, create=True)
