"""Entry points: ``python -m pipelines.tf_to_aim`` and ``python -m pipelines.mlflow_to_aim``."""
