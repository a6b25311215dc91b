"""What every decoder of a TensorBoard summary value shares: the error that skips a value, and tensors
as numpy arrays. The ground under ``transforms.events`` (scalars, the decoding loop) and
``transforms.plugins`` (images, histograms, text, audio, hparams)."""
from __future__ import annotations

import numpy as np
from tensorboard.compat.proto import types_pb2
from tensorboard.util import tensor_util

__all__ = ['UnsupportedValue', 'tensor_to_ndarray']


class UnsupportedValue(Exception):
    """A summary value runferry does not convert; ``plugin`` names what it was."""

    def __init__(self, plugin: str, reason: str = ''):
        super().__init__(reason or f'unsupported plugin {plugin!r}')
        self.plugin = plugin


_FAST_DTYPES = {
    types_pb2.DT_FLOAT: ('float_val', np.float32),
    types_pb2.DT_DOUBLE: ('double_val', np.float64),
    types_pb2.DT_INT32: ('int_val', np.int32),
    types_pb2.DT_INT64: ('int64_val', np.int64),
}


def tensor_to_ndarray(tensor) -> np.ndarray:
    """A ``TensorProto`` as a numpy array (fast path for numeric scalars, TensorBoard's util otherwise)."""
    fast = _FAST_DTYPES.get(tensor.dtype)
    if fast is not None:
        field, dtype = fast
        if tensor.tensor_content:
            shape = [d.size for d in tensor.tensor_shape.dim]
            return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)
        repeated = getattr(tensor, field)
        if len(repeated) == 1 and not tensor.tensor_shape.dim:
            return np.asarray(repeated[0], dtype=dtype)
    return tensor_util.make_ndarray(tensor)
