"""The virtualenv in which the bench runs W&B's own Python reader of ``.wandb`` files: wandb 0.29.0, the
newest release that still ships ``wandb.sdk.internal.datastore`` (runferry's pinned wandb 0.31 has none),
apart from runferry's own venv, every package pinned (``benchmarks/wandb_reader_requirements.txt``).

    python -m benchmarks.wandb_reader_venv [--cache .bench]

Idempotent, as ``benchmarks.aim_convert_venv``: made once under ``<cache>/wandb-reader-venv`` and
installed from the registry with pip; a stamp holding the requirements' text says it is complete, so a
second call does nothing until the requirements change. After installing, ``pip freeze`` must equal the
requirements, else it stops with the difference.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import List, Optional

from benchmarks.aim_convert_venv import pinned_requirements

__all__ = ['REQUIREMENTS', 'venv_dir', 'venv_python', 'is_ready', 'ensure_venv', 'main']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REQUIREMENTS = os.path.join(HERE, 'wandb_reader_requirements.txt')
STAMP = '.installed'


def venv_dir(cache: str) -> str:
    return os.path.join(cache, 'wandb-reader-venv')


def venv_python(cache: str) -> str:
    return os.path.join(venv_dir(cache), 'bin', 'python')


def _requirements_text(requirements: str) -> str:
    with open(requirements) as f:
        return f.read()


def is_ready(cache: str, requirements: str = REQUIREMENTS) -> bool:
    """Whether the venv exists and was completed for exactly these requirements."""
    try:
        with open(os.path.join(venv_dir(cache), STAMP)) as f:
            return f.read() == _requirements_text(requirements)
    except FileNotFoundError:
        return False


def _normalized(line: str) -> str:
    name, _, version = line.partition('==')
    return f'{name.lower().replace("_", "-")}=={version}'


def ensure_venv(cache: str, requirements: str = REQUIREMENTS, log=print) -> str:
    """The venv's ``python``, once the venv holds exactly ``requirements`` (made or completed first)."""
    venv = venv_dir(cache)
    if is_ready(cache, requirements):
        return venv_python(cache)
    pip = os.path.join(venv, 'bin', 'pip')
    if not os.path.exists(venv_python(cache)):
        log(f'wandb reader venv: creating {venv}', flush=True)
        subprocess.run([sys.executable, '-m', 'venv', venv], check=True)
    log(f'wandb reader venv: installing {len(pinned_requirements(requirements))} pinned packages (wandb 0.29.0 '
        f'and its dependencies)', flush=True)
    subprocess.run([pip, 'install', '--quiet', '--disable-pip-version-check', '-r', requirements], check=True)
    frozen = subprocess.run([pip, 'freeze', '--disable-pip-version-check'],
                            check=True, capture_output=True, text=True).stdout.split()
    have = {_normalized(line) for line in frozen if '==' in line}
    want = {_normalized(line) for line in pinned_requirements(requirements)}
    if have != want:
        raise SystemExit(f'wandb reader venv {venv} differs from {os.path.relpath(requirements, ROOT)}: '
                         f'extra {sorted(have - want)}, missing {sorted(want - have)}; remove it and run again')
    with open(os.path.join(venv, STAMP), 'w') as f:
        f.write(_requirements_text(requirements))
    return venv_python(cache)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.wandb_reader_venv',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--cache', default=os.path.join(ROOT, '.bench'))
    args = parser.parse_args(argv)
    print(ensure_venv(args.cache))
    return 0


if __name__ == '__main__':
    sys.exit(main())
