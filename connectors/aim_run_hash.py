"""A converted run's Aim hash: derived from its source identity, so a re-run opens the same run.

Aim has no public way to create a run with a chosen hash: ``Run(run_hash=...)`` only resumes a run that
exists, and a new run takes ``aim.sdk.base_run.generate_run_hash()``. ``chosen_run_hash`` replaces that
function only while a ``with`` block creates a run, and only for the calling thread: any other thread
(an ``aim.Run()`` of the user's own code in the same process) gets Aim's random hash meanwhile, and once
the last block ends Aim's own function is back in place. Local runs written by runferry's storage path
(``connectors.aim_local_run``) need none of this: they open their containers by hash.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Iterator

import aim.sdk.base_run as _aim_base_run

__all__ = ['run_hash_for', 'chosen_run_hash']


def run_hash_for(identity: str) -> str:
    """The Aim run hash of a source run: 24 hex digits, like Aim's own, stable across re-runs."""
    return hashlib.sha256(identity.encode('utf-8')).hexdigest()[:24]


_chosen = threading.local()  # the hash the current thread's next new run takes
_patch_lock = threading.Lock()
_patch_users = 0  # ``with`` blocks open in this process (any thread); Aim's function is back at 0
_aims_generate_run_hash = _aim_base_run.generate_run_hash  # Aim's own function


def _generate_run_hash(*args, **kwargs) -> str:
    chosen = getattr(_chosen, 'value', None)
    if chosen is not None:
        _chosen.value = None  # once: a second run created in the same block gets a random hash
        return chosen
    return _aims_generate_run_hash(*args, **kwargs)


@contextlib.contextmanager
def chosen_run_hash(run_hash: str) -> Iterator[None]:
    """Within the block, the first run this thread creates through Aim's SDK (``Run(repo=...)`` without
    a hash) gets ``run_hash``; Aim's own ``generate_run_hash`` is restored when the last block ends."""
    global _patch_users, _aims_generate_run_hash
    with _patch_lock:
        if _patch_users == 0:
            _aims_generate_run_hash = _aim_base_run.generate_run_hash
            _aim_base_run.generate_run_hash = _generate_run_hash
        _patch_users += 1
    _chosen.value = run_hash
    try:
        yield
    finally:
        _chosen.value = None
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                _aim_base_run.generate_run_hash = _aims_generate_run_hash  # (kept: a late caller may hold the wrapper)
