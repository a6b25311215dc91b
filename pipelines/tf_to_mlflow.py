"""TensorBoard logdir → MLflow tracking store, as a Beam batch pipeline.

    python -m pipelines.tf_to_mlflow --logdir DIR_OR_URL --tracking-uri URI [--experiment NAME]
        [--artifact-location URI] [--layout aim|flat|tensorboard | --flat]
        [--dry-run] [--skipped PATH] [--strict] [--report PATH] [--storage-options JSON] [any Beam flag...]

One MLflow run per run directory, found again by its source tag on a re-run, which adds only what the
store does not hold yet (see README, "TensorBoard into MLflow"). Flags this module does not know
(``--runner``, ``--direct_num_workers``...) go to Beam untouched.
"""
from __future__ import annotations

import argparse
from typing import List, Optional, Tuple

from pipelines import convert
from pipelines.common import exit_program
from pipelines.destinations.mlflow import MlflowDestination
from pipelines.sources.tensorboard import TensorBoardSource

__all__ = ['PROG', 'make_parser', 'parse', 'run']

PROG = 'tf_to_mlflow'


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags (also read by the Flex Template's tests to match metadata.json)."""
    return convert.make_parser(PROG, __doc__, TensorBoardSource, MlflowDestination)


def parse(argv: Optional[List[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    """``(the flags, resolved; Beam's arguments)``, or ``UsageError``; nothing is listed or written."""
    command = convert.parse(make_parser(), TensorBoardSource, MlflowDestination, argv)
    return command.args, command.pipeline_args


def run(argv: Optional[List[str]] = None) -> int:
    return convert.convert(PROG, __doc__, TensorBoardSource, MlflowDestination, argv)


if __name__ == '__main__':
    exit_program(run())
