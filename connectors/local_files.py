"""Small facts and steps about local files and processes, shared by the writers that clean up after a
killed process (``aim_staging``, ``aim_run_install``) or make a rename durable (``aim_repo_files``)."""
from __future__ import annotations

import os

__all__ = ['process_alive', 'fsync_directory']


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (another user's included); this process is. A
    zombie (killed, not yet reaped by its parent) is not."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        with open(f'/proc/{pid}/stat', 'rb') as stat:
            return stat.read().rsplit(b')', 1)[1].split()[0] != b'Z'
    except (OSError, IndexError):  # no /proc: alive, as kill said
        return True


def fsync_directory(path: str) -> None:
    """Make the entries of directory ``path`` (files created or renamed in it) durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
