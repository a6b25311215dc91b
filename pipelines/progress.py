"""Progress while a pipeline runs on DirectRunner: files read of total, runs written of total, points/s.

Beam's DirectRunner returns from ``run()`` only when the pipeline is done, and its worker processes
cannot print to the user's terminal line, so counters cannot be watched from the launcher. Instead each
worker appends small records (``files 1`` / ``runs 1 points N``) to its own file in a local directory
(``ProgressRecorder``), and a thread in the launcher sums them and redraws one line on a terminal, or
logs a plain line every few seconds otherwise (``ProgressDisplay``). On other runners the directory
is not given and the recorder does nothing.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional

__all__ = ['ProgressRecorder', 'ProgressDisplay']


class ProgressRecorder:
    """Picklable; appends to ``<directory>/<pid>.progress``, one short line per event. The file stays open
    in each process that records (opening it for each line cost more than the line), line-buffered so
    that the display sees each line at once."""

    def __init__(self, directory: Optional[str]):
        self.directory = directory
        self._out = None
        self._pid = None

    def __getstate__(self):
        return {'directory': self.directory}

    def __setstate__(self, state):
        self.__init__(state['directory'])

    def record(self, what: str, count: int = 1, points: int = 0) -> None:
        if not self.directory:
            return
        try:
            self._file().write(f'{what} {count} {points}\n')
        except OSError:
            pass  # progress is a courtesy; it never fails a conversion

    def _file(self):
        if self._out is None or self._pid != os.getpid():  # a new process: its own file
            self._out = open(os.path.join(self.directory, f'{os.getpid()}.progress'), 'a', buffering=1)
            self._pid = os.getpid()
        return self._out


class ProgressDisplay(threading.Thread):
    def __init__(self, directory: str, files_total: int, runs_total: int, interval: float = 0.5,
                 stream=None):
        super().__init__(daemon=True)
        self.directory = directory
        self.files_total = files_total
        self.runs_total = runs_total
        self.interval = interval
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self._halt = threading.Event()
        self._began = time.time()
        self._last_plain = 0.0

    def totals(self):
        files = runs = points = 0
        for name in os.listdir(self.directory):
            if not name.endswith('.progress'):
                continue
            try:
                with open(os.path.join(self.directory, name)) as lines:
                    for line in lines:
                        parts = line.split()
                        if len(parts) != 3:
                            continue  # a line being written
                        if parts[0] == 'files':
                            files += int(parts[1])
                        elif parts[0] == 'runs':
                            runs += int(parts[1])
                            points += int(parts[2])
            except OSError:
                continue
        return files, runs, points

    def line(self) -> str:
        files, runs, points = self.totals()
        elapsed = max(time.time() - self._began, 1e-9)
        read = f'files {files}/{self.files_total}  ' if self.files_total else ''  # MLflow runs have no files
        return (f'{read}runs {runs}/{self.runs_total}  '
                f'{points:,} points  {points / elapsed:,.0f} points/s  {elapsed:.0f}s')

    def run(self):
        while not self._halt.wait(self.interval):
            self.draw()

    def draw(self, final: bool = False):
        text = self.line()
        if self.tty:
            self.stream.write('\r' + text + ('\n' if final else ''))
            self.stream.flush()
        elif final or time.time() - self._last_plain >= 5:
            self._last_plain = time.time()
            self.stream.write(f'progress: {text}\n')
            self.stream.flush()

    def stop(self):
        self._halt.set()
        self.join(timeout=5)
        self.draw(final=True)
