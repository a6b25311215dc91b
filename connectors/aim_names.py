"""Which sequence names an Aim run can hold, as a pure function (``aim_sequence_name_problem``).

Measured with Aim 3.29.1 by writing one sequence of each name beside a sequence ``ok`` and reading
the run back through the SDK (``run.metrics()``) in a new process:

* the empty name ``''`` is written without complaint, but the run becomes unreadable: Aim's key
  encoding does not tell an empty string apart from an integer, so the run's
  ``typed_traces/metric/<context>`` reads back as ``{'ok': 1, 177: 1}`` and
  ``Run.iter_sequence_info_by_type`` fails ``assert isinstance(seq_name, str)`` — every sequence of
  the run is lost to the SDK and the UI, not only that one;
* a name that is not valid Unicode text (lone surrogates, as ``bytes.decode(errors='surrogateescape')``
  leaves them) cannot be encoded as UTF-8: the run's write fails;
* everything else read back unchanged: whitespace only (``' '``, ``'\\t'``), a leading, trailing or
  inner ``/``, ``.``, control characters (``'\\n'``, ``'\\x00'``), bytes Aim's key encoding uses as
  sentinels (``'\\xfe'``, ``'\\xff'``, as characters), non-ASCII text, and names of 5,000 and 70,000
  characters.

A sequence whose name Aim cannot hold is not written: it is a dead letter naming the name and its
source (``transforms``' run builders call this for every series), and the rest of the run is.
"""
from __future__ import annotations

from typing import Optional

__all__ = ['aim_sequence_name_problem']


def aim_sequence_name_problem(name: str) -> Optional[str]:
    """Why Aim cannot hold a sequence called ``name`` (a dead letter's reason), or None if it can."""
    if not isinstance(name, str):
        return f'sequence name is not text ({type(name).__name__}), which Aim cannot store'
    if name == '':
        return 'empty sequence name (Aim writes it, then cannot read any sequence of the run)'
    try:
        name.encode('utf-8')
    except UnicodeEncodeError:
        return 'sequence name is not valid Unicode (a lone surrogate), which Aim cannot store'
    return None
