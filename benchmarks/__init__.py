"""``make bench``: runferry's backfill speed against Aim's per-point path and TensorBoard's loader."""
