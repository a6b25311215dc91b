"""MLflow tracking store → Aim repo, as a Beam batch pipeline.

    python -m pipelines.mlflow_to_aim --tracking-uri URI [--experiment ID_OR_NAME ...] --repo AIM_REPO
        [--dry-run] [--skipped PATH] [--strict] [--report PATH] [any Beam flag...]

URI: a local ``mlruns`` path or ``file://`` URL, a SQL store (``sqlite:///…``, ``postgresql://…``) or a
tracking server (``http(s)://…``); ``MLFLOW_TRACKING_URI`` when the flag is absent. Runs and experiments
are listed here, page by page, before the pipeline starts; the pipeline fetches and writes one run per
element. Flags this module does not know go to Beam untouched.
"""
from __future__ import annotations

import sys

# Run as a program, a new local repo is created (pipelines.early_repo) while the imports below load.
if __name__ == '__main__':
    from pipelines import early_repo
    EARLY_REPO = early_repo.start(sys.argv[1:])
else:
    EARLY_REPO = None

import argparse
from typing import List, Optional, Tuple

from pipelines import convert
from pipelines.common import UsageError, exit_program
from pipelines.destinations.aim import AimDestination
from pipelines.sources.mlflow import MlflowSource

__all__ = ['PROG', 'make_parser', 'parse', 'run', 'UsageError']

PROG = 'mlflow_to_aim'


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags (also read by the Flex Template's tests to match metadata.json)."""
    return convert.make_parser(PROG, __doc__, MlflowSource, AimDestination)


def parse(argv: Optional[List[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    """``(the flags, resolved; Beam's arguments)``, or ``UsageError``; nothing is listed or written."""
    command = convert.parse(make_parser(), MlflowSource, AimDestination, argv)
    return command.args, command.pipeline_args


def run(argv: Optional[List[str]] = None) -> int:
    return convert.convert(PROG, __doc__, MlflowSource, AimDestination, argv, early=EARLY_REPO)


if __name__ == '__main__':
    exit_program(run())
