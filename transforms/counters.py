"""The names every transform counts and tags by, source or destination alike.

Counters live in Beam's metrics under ``NAMESPACE``; the report (``pipelines.report``) reads them by
their shared names (``runs_written``, ``points_written``, ``points_written:<kind>``, ``runs_failed``,
``points_skipped``, ...). ``SKIPPED`` is the tag of every dead-letter output, ``COUNTS`` of every
step's counts handed on as data (``transforms.counted``).
"""
from __future__ import annotations

__all__ = ['NAMESPACE', 'SKIPPED', 'COUNTS']

NAMESPACE = 'runferry'
SKIPPED = 'skipped'
COUNTS = 'counts'
