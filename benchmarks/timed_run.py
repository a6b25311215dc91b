"""One conversion command in a subprocess, timed and its process tree's memory polled: what every line
of the ``aim convert`` bench measures."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

from benchmarks.measure import TreeMemory

__all__ = ['Timed', 'run_timed', 'runferry_command']

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Timed:
    """One subprocess run: its wall time, the peak memory of its process tree, its output's tail."""
    wall: float
    peak_mb: float
    output: str


def run_timed(cmd: List[str], cwd: str = ROOT, env: Optional[Dict[str, str]] = None) -> Timed:
    """``cmd`` in a subprocess, timed from start to exit, its tree's memory polled; fails on a non-zero exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeMemory(proc.pid) as memory:
        output, _ = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f'{" ".join(cmd[:4])} … failed ({proc.returncode}):\n{output[-3000:]}')
    return Timed(wall, memory.peak_total / 2 ** 20, output[-5000:])


def runferry_command(logdir: str, repo: str, extra: List[str] = ()) -> List[str]:
    """The README's command, with this interpreter."""
    return [sys.executable, '-m', 'pipelines.tf_to_aim', '--logdir', logdir, '--repo', repo, *extra]
