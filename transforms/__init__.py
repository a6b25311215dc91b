"""Beam PTransforms and DoFns, and the pure functions they call."""
