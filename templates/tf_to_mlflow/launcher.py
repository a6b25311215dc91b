"""Flex Template entry point of tf_to_mlflow: the image's FLEX_TEMPLATE_PYTHON_PY_FILE.

Dataflow runs ``python launcher.py --logdir=gs://… --tracking_uri=https://… [--flat=true] --runner=DataflowRunner …``;
this turns the template-style arguments into ``python -m pipelines.tf_to_mlflow`` arguments and runs that
very pipeline (``pipelines.tf_to_mlflow.run``), so a template job and a laptop run share all their code.
Locally: ``python templates/tf_to_mlflow/launcher.py --logdir=/abs/logs --tracking_uri=sqlite:////abs/mlflow.db``.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # run as a script from the image's /template or a checkout
    sys.path.insert(0, ROOT)

from pipelines import tf_to_mlflow  # noqa: E402
from templates.flex_args import launch  # noqa: E402

__all__ = ['run']


def run(argv=None) -> int:
    return launch(tf_to_mlflow, sys.argv[1:] if argv is None else argv)


if __name__ == '__main__':
    sys.exit(run())
