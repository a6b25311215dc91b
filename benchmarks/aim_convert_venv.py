"""The virtualenv in which the bench runs ``aim convert tensorboard``: as its users install it, apart
from runferry's own venv, every package pinned (``benchmarks/aim_convert_requirements.txt``).

    python -m benchmarks.aim_convert_venv [--cache .bench]

Idempotent: the venv is made once under ``<cache>/aim-convert-venv`` and installed from the registry
with pip; a stamp holding the requirements' text says it is complete, so a second call does nothing
until the requirements change. After installing, ``pip freeze`` must equal the requirements (an exact
venv, not "close enough"), else it stops with the difference.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import List, Optional

__all__ = ['REQUIREMENTS', 'venv_dir', 'aim_executable', 'pinned_requirements', 'create_command',
           'install_command', 'ensure_venv', 'main']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REQUIREMENTS = os.path.join(HERE, 'aim_convert_requirements.txt')
STAMP = '.installed'


def venv_dir(cache: str) -> str:
    return os.path.join(cache, 'aim-convert-venv')


def aim_executable(cache: str) -> str:
    """The venv's ``aim`` command."""
    return os.path.join(venv_dir(cache), 'bin', 'aim')


def pinned_requirements(path: str = REQUIREMENTS) -> List[str]:
    """The requirement lines (``name==version``), comments and blank lines left out."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith('#')]


def create_command(cache: str) -> List[str]:
    """Makes the venv with this interpreter's Python (``venv`` bases it on the base interpreter)."""
    return [sys.executable, '-m', 'venv', venv_dir(cache)]


def install_command(cache: str, requirements: str = REQUIREMENTS) -> List[str]:
    return [os.path.join(venv_dir(cache), 'bin', 'pip'), 'install', '--quiet', '--disable-pip-version-check',
            '-r', requirements]


def _normalized(line: str) -> str:
    name, _, version = line.partition('==')
    return f'{name.lower().replace("_", "-")}=={version}'


def _stamp_text(requirements: str) -> str:
    with open(requirements) as f:
        return f.read()


def ensure_venv(cache: str, requirements: str = REQUIREMENTS, log=print) -> str:
    """The venv's ``aim`` command, once the venv holds exactly ``requirements`` (made or completed first)."""
    venv = venv_dir(cache)
    stamp = os.path.join(venv, STAMP)
    wanted = _stamp_text(requirements)
    if os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == wanted:
                return aim_executable(cache)
    if not os.path.exists(os.path.join(venv, 'bin', 'python')):
        log(f'aim convert venv: creating {venv}', flush=True)
        subprocess.run(create_command(cache), check=True)
    log(f'aim convert venv: installing {len(pinned_requirements(requirements))} pinned packages '
        f'(aim, tensorflow-cpu, tensorboard and their dependencies; minutes the first time)', flush=True)
    subprocess.run(install_command(cache, requirements), check=True)
    frozen = subprocess.run([os.path.join(venv, 'bin', 'pip'), 'freeze', '--disable-pip-version-check'],
                            check=True, capture_output=True, text=True).stdout.split()
    have = {_normalized(line) for line in frozen if '==' in line}
    want = {_normalized(line) for line in pinned_requirements(requirements)}
    if have != want:
        raise SystemExit(f'aim convert venv {venv} differs from {os.path.relpath(requirements, ROOT)}: '
                         f'extra {sorted(have - want)}, missing {sorted(want - have)}; remove it and run again')
    with open(stamp, 'w') as f:
        f.write(wanted)
    return aim_executable(cache)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.aim_convert_venv', description=__doc__.split('\n')[0])
    parser.add_argument('--cache', default=os.path.join(ROOT, '.bench'))
    args = parser.parse_args(argv)
    print(ensure_venv(args.cache))
    return 0


if __name__ == '__main__':
    sys.exit(main())
