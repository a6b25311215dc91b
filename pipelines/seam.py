"""The seam between sources and destinations: every conversion is one ``Source`` and one ``Destination``.

A source lists what it will convert (``plan``) and reads it as runs of the neutral run model
(``runmodel.RunData``) and dead letters (``runmodel.Skip``); a destination checks it can write
(``check``), writes those runs, ends with its own final step (Aim's index) and adds its own lines to the
report. ``pipelines.convert.convert`` composes one of each; neither knows the other::

    Source.read(progress):       PBegin            → {'runs': PCollection[RunData], 'skipped': PCollection[Skip]}
    Destination.write(progress): PCollection[RunData] → {'written': PCollection[dict], 'skipped': PCollection[Skip]}

Both count through Beam metrics in the namespace ``transforms.counters.NAMESPACE`` with the shared
counter names (``runs_read``, ``runs_written``, ``points_read``, ``points_written:<kind>``,
``runs_failed``, ``points_skipped``, ...), which the report reads; and both return what each of their
counting steps counted as a third output, ``counts`` (``transforms.counted``), which the job's own report
sums (``pipelines.job_report``). A plug whose steps count nothing may leave ``counts`` out.

The order ``convert`` calls them in: ``add_flags`` (both, on one parser) → ``from_args`` (destination,
then source) → ``plan`` → ``check`` (not in a dry run) → ``warn`` → ``print_plan`` (a dry run ends
here) → ``read`` | ``write`` → ``counters`` and ``report_lines`` → ``nothing_written``. Every check
before the pipeline raises ``UsageError``: one line, exit status 2, before any work.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Dict, List, Optional

import apache_beam as beam

from pipelines.common import UsageError

__all__ = ['Source', 'Destination', 'UsageError']


class Source:
    """Where runs come from. A subclass is built from parsed flags (``from_args``) and lists its input
    once (``plan``), in the launcher, before the pipeline; ``read`` is the pipeline's first step."""

    # the help of --dry-run: what this source's plan shows
    DRY_RUN_HELP = 'print what would be converted; write nothing'

    # where ``warn`` logs: ``convert`` sets the program's own logger (``tf_to_aim``) on the instance
    log = logging.getLogger('runferry')

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        """Add this source's own flags to the command's parser."""
        raise NotImplementedError

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> 'Source':
        """The source the parsed flags describe: values checked (``UsageError``, one line naming the
        value), secrets remembered (``connectors.redact.remember``). Lists nothing yet."""
        raise NotImplementedError

    def plan(self) -> None:
        """List the source once; ``UsageError`` when it cannot be listed or holds nothing to convert."""
        raise NotImplementedError

    @property
    def runs_total(self) -> int:
        """Runs planned (for progress, and for choosing the DirectRunner's workers); after ``plan``."""
        raise NotImplementedError

    @property
    def files_total(self) -> int:
        """Files planned, for progress (0 where the source has no files)."""
        return 0

    def warn(self) -> None:
        """Log what the plan will leave out or may surprise (one line each); after ``plan``."""

    def print_plan(self, destination: 'Destination', out=None) -> None:
        """The ``--dry-run`` output: what would be converted, into ``destination`` (``describe()``)."""
        raise NotImplementedError

    def read(self, progress=None) -> beam.PTransform:
        """PBegin → ``{'runs': PCollection[RunData], 'skipped': PCollection[Skip]}``. ``progress``: a
        ``pipelines.progress.ProgressRecorder`` for what the source reads."""
        raise NotImplementedError

    def counters(self) -> Dict[str, int]:
        """Report counters known before the pipeline runs (files ignored, deleted runs left out, ...)."""
        return {}

    def nothing_written(self, skipped_path: str) -> Optional[str]:
        """The line that explains a conversion that wrote no run (without the program's prefix), or
        None when an empty result needs no explanation."""
        return None


class Destination:
    """Where runs go. A subclass is built from parsed flags (``from_args``), checks before any work that
    it can write (``check``), and writes runs with its own final step included (``write``)."""

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        """Add this destination's own flags to the command's parser."""
        raise NotImplementedError

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> 'Destination':
        """The destination the parsed flags describe: values checked (``UsageError``), secrets
        remembered. Touches nothing yet."""
        raise NotImplementedError

    def check(self, early: Any = None) -> None:
        """Before any work: ``UsageError`` unless the destination can be written (created if missing,
        writable, its server answering). ``early``: whatever the entry point started before its imports
        (``pipelines.early_repo.EarlyRepo``), or None."""
        raise NotImplementedError

    def describe(self) -> str:
        """The destination for messages and plans, secrets masked (``Aim repo /data/aim``)."""
        raise NotImplementedError

    def default_skipped_path(self) -> str:
        """Where dead letters go when ``--skipped`` is not given."""
        raise NotImplementedError

    def write(self, progress=None) -> beam.PTransform:
        """PCollection[RunData] → ``{'written': PCollection[dict], 'skipped': PCollection[Skip]}``, its
        final step included. Counts ``runs_written``, ``points_written[:<kind>]``, ``runs_failed``, ..."""
        raise NotImplementedError

    def report_lines(self, counters: Dict[str, int]) -> List[str]:
        """Its own lines at the end of the report (how to view the result, what is left to do)."""
        return []

    def report_fields(self) -> Dict[str, Any]:
        """Its own fields in the ``--report`` JSON, secrets masked."""
        return {}
