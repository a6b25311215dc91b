"""Destination plugs (``pipelines.seam.Destination``): one module per destination."""
