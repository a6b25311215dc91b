"""Entry points (``python -m pipelines.tf_to_aim``, ``python -m pipelines.mlflow_to_aim``), each one source plug
(``sources/``) and one destination plug (``destinations/``) composed by ``convert`` over the seam (``seam.py``)."""
import logging as _logging


class _DropBeamImportNoise(_logging.Filter):
    """``import apache_beam`` warns on the root logger that apitools (Beam's GCP extra) is missing; it is
    not needed here, and it would make every one-line error two lines."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return 'apitools not found' not in record.getMessage()


_logging.getLogger().addFilter(_DropBeamImportNoise())
