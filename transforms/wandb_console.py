"""W&B's console pieces → the lines a terminal shows, as Aim's own terminal-log capture makes them.

W&B writes one ``output_raw`` record per write a script makes to stdout or stderr (``print('a')`` is two
pieces, ``'a'`` and ``'\\n'``; a progress bar's update is ``'\\rbar'``), each with its stream and wall
time: ``ConsoleLines`` below. (``output`` records, from W&B's own terminal emulator: ``emulated_lines``.)
Aim's own capture (``aim/ext/resource/tracker.py``, ``_store_buffered_logs``) sends both streams into one
buffer, ends a line at ``\\n``, and keeps of a line the text after its last ``\\r`` (a progress bar's
final state). ``ConsoleLines`` does the same over the pieces in record order, with two differences a
terminal would show too: a ``\\r`` at a line's very end (``\\r\\n`` line endings) overwrites nothing, and
a line is complete only when its ``\\n`` comes (Aim's capture writes a partial line and rewrites it).

Each line is dated by its first piece and keeps where its first piece was read (file, record offset),
and which streams its pieces came from. The texts a ``\\r`` overwrote (each non-empty text between two
``\\r`` of a line) are counted, not kept: Aim's capture wrote them at the line's step and then
overwrote them too.

W&B's ``console="redirect"`` and ``"wrap_emu"`` modes (``redirect``, W&B's default before wandb-core)
write ``output`` records instead: one stream's lines already as a terminal shows them, from W&B's
terminal emulator (``wandb/sdk/lib/redirect.py``, ``TerminalEmulator.read``), each ending in a newline;
when the stream's last line changed since the emulator's previous read (a progress bar), the record
begins with ``\\r`` and that line again. ``emulated_lines`` splits a record into lines, each marked when
it rewrites the stream's last line (as W&B's own file stream reads them: ``CRDedupeFilePolicy``).

ANSI escape sequences are kept as written (Aim's capture removes cursor-up/-down sequences and moves
its line counter with them; runferry does not rewrite earlier lines).
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

__all__ = ['ConsoleLine', 'ConsoleLines', 'emulated_lines', 'OVERWRITTEN_REASON']

# (the report groups reasons without their parenthesized part)
OVERWRITTEN_REASON = ('console text overwritten by a carriage return (a progress bar\'s earlier state: a terminal '
                      'shows the text after a line\'s last \\r)')


@dataclasses.dataclass
class ConsoleLine:
    text: str
    stream: str  # 'stdout', 'stderr' or 'stderr,stdout' (pieces of both)
    wall_time: float  # of its first piece
    source: str  # where its first piece was read
    offset: int
    overwritten: int  # texts a \r overwrote on this line


class ConsoleLines:
    """Pieces in, complete lines out; ``end()`` gives the last line if it had no newline. One terminal:
    a ``.wandb`` file (one process's output)."""

    def __init__(self):
        self._parts: List[str] = []
        self._streams: set = set()
        self._first: Optional[Tuple[float, str, int]] = None  # wall time, source, offset

    def add(self, stream: str, text: str, wall_time: float, source: str, offset: int) -> List[ConsoleLine]:
        lines = []
        pieces = text.split('\n')
        for position, piece in enumerate(pieces):
            ends = position < len(pieces) - 1  # its newline came
            if self._first is None and (piece or ends):
                self._first = (wall_time, source, offset)
            if piece:
                self._parts.append(piece)
                self._streams.add(stream)
            if ends:
                lines.append(self._line(stream))
        return lines

    def end(self) -> Optional[ConsoleLine]:
        """The line still open (no newline came before the file ended), or None."""
        if not ''.join(self._parts).strip('\r'):
            self._parts, self._streams, self._first = [], set(), None
            return None
        return self._line(None)

    def _line(self, ending_stream: Optional[str]) -> ConsoleLine:
        whole = ''.join(self._parts).rstrip('\r')
        texts = whole.split('\r')
        streams = self._streams or {ending_stream}
        wall_time, source, offset = self._first
        line = ConsoleLine(texts[-1], ','.join(sorted(streams)), wall_time, source, offset,
                           sum(1 for text in texts[:-1] if text))
        self._parts, self._streams, self._first = [], set(), None
        return line


def emulated_lines(text: str) -> List[Tuple[bool, str]]:
    """An ``output`` record's text → ``[(rewrites the stream's last line, line)]``. The newline ending the
    record ends its last line (it starts no new one); a line's leading ``\\r`` marks a rewrite; ``\\r``
    before a newline (Windows' ``os.linesep``) is not text."""
    pieces = text.split('\n')
    if len(pieces) > 1 and pieces[-1] == '':
        pieces.pop()
    return [(piece.startswith('\r'), piece[1:].rstrip('\r') if piece.startswith('\r') else piece.rstrip('\r'))
            for piece in pieces if piece or len(pieces) > 1]
