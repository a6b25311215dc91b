"""Flex Template entry point of wandb_to_aim: the image's FLEX_TEMPLATE_PYTHON_PY_FILE.

Dataflow runs ``python launcher.py --wandb_dir=gs://… --repo=aim://… [--project=NAME] --runner=DataflowRunner …``;
this turns the template-style arguments into ``python -m pipelines.wandb_to_aim`` arguments and runs that
very pipeline (``pipelines.wandb_to_aim.run``), so a template job and a laptop run share all their code.
Locally: ``python templates/wandb_to_aim/launcher.py --wandb_dir=/abs/wandb --repo=/abs/aim``.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # run as a script from the image's /template or a checkout
    sys.path.insert(0, ROOT)

from pipelines import wandb_to_aim  # noqa: E402
from templates.flex_args import launch  # noqa: E402

__all__ = ['run']


def run(argv=None) -> int:
    return launch(wandb_to_aim, sys.argv[1:] if argv is None else argv)


if __name__ == '__main__':
    sys.exit(run())
