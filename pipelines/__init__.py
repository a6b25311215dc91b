"""Entry points: ``python -m pipelines.tf_to_aim`` and ``python -m pipelines.mlflow_to_aim``."""
import logging as _logging


class _DropBeamImportNoise(_logging.Filter):
    """``import apache_beam`` warns on the root logger that apitools (Beam's GCP extra) is missing; it is
    not needed here, and it would make every one-line error two lines."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return 'apitools not found' not in record.getMessage()


_logging.getLogger().addFilter(_DropBeamImportNoise())
