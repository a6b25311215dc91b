"""Which way runs are written into Aim: runferry's storage path, or Aim's own API.

The storage path (``connectors.aim_local_run``, ``connectors.aim_storage``, ``connectors.aim_sequences``)
writes Aim's private storage layout byte for byte, checked against Aim's own writers for the versions in
``TESTED_VERSIONS`` only. With any other installed ``aim`` or ``aimrocks``, runs are written through
Aim's own API instead (``connectors.aim_api_run``): slower, but whatever layout that Aim writes. One
warning line says so, once per process; a different layout is never written silently.

``RUNFERRY_AIM_WRITE_PATH=api`` forces Aim's API with the tested versions too (to compare the two
paths, or to step around a storage-path problem); unset (or ``auto``), the versions decide.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import logging
import os
from typing import Mapping, Optional

__all__ = ['TESTED_VERSIONS', 'WRITE_PATH_ENV', 'WritePath', 'choose_write_path', 'installed_versions',
           'write_path']

logger = logging.getLogger(__name__)

# the versions whose storage layout the storage path is tested against (tests/test_bulk_write.py);
# setup.py and constraints.txt pin the same
TESTED_VERSIONS = {'aim': '3.29.1', 'aimrocks': '0.5.2'}
WRITE_PATH_ENV = 'RUNFERRY_AIM_WRITE_PATH'
_SETTINGS = ('auto', 'api')


@dataclasses.dataclass(frozen=True)
class WritePath:
    through_api: bool
    warning: Optional[str] = None  # the line that says why Aim's API is used


def choose_write_path(installed: Mapping[str, Optional[str]], setting: Optional[str]) -> WritePath:
    """The write path for the ``installed`` versions ({package: version or None}) and the value of
    ``RUNFERRY_AIM_WRITE_PATH`` (None when unset). An unknown setting is a ``ValueError`` naming it."""
    setting = (setting or 'auto').strip().lower()
    if setting not in _SETTINGS:
        raise ValueError(f'{WRITE_PATH_ENV}={setting!r} is not one of: {", ".join(_SETTINGS)}')
    untested = [f'{package} {installed.get(package)} is not the tested {tested}'
                for package, tested in TESTED_VERSIONS.items() if installed.get(package) != tested]
    if untested:
        return WritePath(True, f'{"; ".join(untested)}: writing through Aim\'s API, slower')
    if setting == 'api':
        return WritePath(True, f"{WRITE_PATH_ENV}=api: writing through Aim's API, slower")
    return WritePath(False)


def installed_versions() -> dict:
    """{package: installed version, or None} for the packages of ``TESTED_VERSIONS``."""
    versions = {}
    for package in TESTED_VERSIONS:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def write_path() -> WritePath:
    """This process's write path (``choose_write_path`` of the installed versions and the environment);
    its warning is logged the first time it is asked for."""
    return _write_path(os.environ.get(WRITE_PATH_ENV))


@functools.lru_cache(maxsize=None)
def _write_path(setting: Optional[str]) -> WritePath:
    chosen = choose_write_path(installed_versions(), setting)
    if chosen.warning:
        logger.warning(chosen.warning)
    return chosen
