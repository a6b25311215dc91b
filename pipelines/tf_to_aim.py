"""TensorBoard logdir → Aim repo, as a Beam batch pipeline.

    python -m pipelines.tf_to_aim --logdir DIR_OR_URL --repo AIM_REPO [--layout aim|flat|tensorboard | --flat]
        [--experiment NAME]
        [--dry-run] [--skipped PATH] [--strict] [--storage-options JSON] [any Beam flag...]

Flags this module does not know (``--runner``, ``--direct_num_workers``...) go to Beam untouched.
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
from pipelines.common import exit_program
from pipelines.destinations.aim import AimDestination
from pipelines.sources.tensorboard import TensorBoardSource

__all__ = ['PROG', 'make_parser', 'parse', 'run']

PROG = 'tf_to_aim'


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags (also read by the Flex Template's tests to match metadata.json)."""
    return convert.make_parser(PROG, __doc__, TensorBoardSource, AimDestination)


def parse(argv: Optional[List[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    """``(the flags, resolved; Beam's arguments)``, or ``UsageError``; nothing is listed or written."""
    command = convert.parse(make_parser(), TensorBoardSource, AimDestination, argv)
    return command.args, command.pipeline_args


def run(argv: Optional[List[str]] = None) -> int:
    return convert.convert(PROG, __doc__, TensorBoardSource, AimDestination, argv, early=EARLY_REPO)


if __name__ == '__main__':
    exit_program(run())
