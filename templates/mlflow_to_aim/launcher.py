"""Flex Template entry point of mlflow_to_aim: the image's FLEX_TEMPLATE_PYTHON_PY_FILE.

Dataflow runs ``python launcher.py --tracking_uri=https://… --repo=aim://… [--experiment=NAME] --runner=DataflowRunner …``;
this turns the template-style arguments into ``python -m pipelines.mlflow_to_aim`` arguments and runs that
very pipeline (``pipelines.mlflow_to_aim.run``), so a template job and a laptop run share all their code.
Locally: ``python templates/mlflow_to_aim/launcher.py --tracking_uri=sqlite:////abs/mlflow.db --repo=/abs/aim``.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # run as a script from the image's /template or a checkout
    sys.path.insert(0, ROOT)

from pipelines import mlflow_to_aim  # noqa: E402
from templates.flex_args import launch  # noqa: E402

__all__ = ['run']


def run(argv=None) -> int:
    return launch(mlflow_to_aim, sys.argv[1:] if argv is None else argv)


if __name__ == '__main__':
    sys.exit(run())
