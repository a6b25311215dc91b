"""What every benchmark measures the same way: the machine, a process tree's peak memory, and repos of
earlier measurements set aside rather than deleted just before a timed run."""
from __future__ import annotations

import os
import platform
import shutil
import threading
import time
from typing import Dict

import psutil

__all__ = ['machine', 'TreeMemory', 'set_aside', 'empty_trash']


def machine() -> Dict[str, str]:
    cpu = platform.processor() or 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        'cores': str(os.cpu_count()),
        'ram': f'{psutil.virtual_memory().total / 2 ** 30:.1f} GiB',
        'cpu': cpu,
        'python': platform.python_version(),
        'load': ' '.join(f'{x:.1f}' for x in os.getloadavg()),
    }


class TreeMemory:
    """Peak resident memory of a process and all its descendants, polled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.peak_single = max(self.peak_single, rss)
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def set_aside(path: str) -> None:
    """Move ``path`` (a repo of an earlier measurement) into the ``.trash`` directory beside it, which
    ``empty_trash`` deletes once every measurement is done.

    Not deleted here: on this machine's ext4 volume (no journal), the kernel skips inodes deleted in the
    last minute when it allocates new ones, checking each (``recently_deleted``), so creating files
    right after deleting a 200-run repo's thousands costs runferry's pipeline ~7% of its CPU (perf:
    ``__ext4_new_inode`` 7.1% of all samples after the delete, 0.2% without). That cost belongs to the
    benchmark's cleanup, not to a conversion; Aim's per-point path creates few files and hardly pays it.
    """
    if os.path.lexists(path):
        trash = os.path.join(os.path.dirname(os.path.abspath(path)), '.trash')
        os.makedirs(trash, exist_ok=True)
        os.replace(path, os.path.join(trash, f'{os.path.basename(path)}-{time.time_ns()}'))


def empty_trash(directory: str) -> None:
    shutil.rmtree(os.path.join(directory, '.trash'), ignore_errors=True)
