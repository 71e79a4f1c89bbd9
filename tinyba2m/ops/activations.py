"""Element-wise activations and softmax.

relu:    out = max(x, 0)                 dx = dout * [x > 0]
sigmoid: s = 1 / (1 + exp(-x))           dx = dout * s * (1 - s)
softmax: p = exp(x - max) / sum exp      dx = p * (dout - sum(dout * p))   (along ``axis``)

ReLU's two passes run on the host pool in sample chunks of about ``CHUNK_BYTES`` of x
(``hostpool.chunk_slices`` / ``map_chunks``); a ReLU that follows a batch norm is better fused into
it (``ops.batchnorm.batchnorm_relu_forward``).
"""
from __future__ import annotations

from .. import backend, hostpool
from .validation import require_dout, require_float


CHUNK_BYTES = 2 ** 20  # bytes of x per sample chunk of the ReLU (about a core's L2)
POOL_MIN_BYTES = hostpool.POOL_MIN_BYTES  # a smaller x is one chunk


def _sample_chunks(x):
    return hostpool.sample_chunks(x, CHUNK_BYTES, POOL_MIN_BYTES)


def relu_forward(x):
    """``max(x, 0)`` element-wise; any shape. Returns (out, cache = the mask x > 0)."""
    require_float("relu", "x", x, check_finite=False)
    xp = backend.array_module(x)
    out, mask = xp.empty(x.shape, dtype=x.dtype), xp.empty(x.shape, dtype=bool)

    def one_chunk(sl):
        xp.maximum(x[sl], 0, out=out[sl])
        xp.greater(x[sl], 0, out=mask[sl])  # (a multiply by the mask would cast it to float first)

    hostpool.map_chunks(one_chunk, _sample_chunks(x), like=x)
    return out, mask


def relu_backward(dout, cache):
    require_dout("relu", dout, cache.shape)
    xp = backend.array_module(dout)
    dx = xp.empty(dout.shape, dtype=dout.dtype)

    def one_chunk(sl):
        xp.multiply(dout[sl], cache[sl], out=dx[sl])

    hostpool.map_chunks(one_chunk, _sample_chunks(dout), like=dout)
    return dx


def stable_sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow for large |x|."""
    xp = backend.array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def sigmoid_forward(x):
    """Logistic sigmoid element-wise; any shape. Returns (out, cache = out)."""
    require_float("sigmoid", "x", x, check_finite=False)
    s = stable_sigmoid(x)
    return s, s


def sigmoid_backward(dout, cache):
    require_dout("sigmoid", dout, cache.shape)
    s = cache
    return dout * s * (1 - s)


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis``, shifted by the max for stability."""
    xp = backend.array_module(x)
    z = x - x.max(axis=axis, keepdims=True)
    e = xp.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def softmax_forward(x, axis=-1):
    """Softmax along ``axis`` (any axis of any shape). Returns (p, cache)."""
    require_float("softmax", "x", x, check_finite=False)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softmax: axis {axis} is out of range for an input with {x.ndim} dimensions")
    p = softmax(x, axis)
    return p, (p, axis)


def softmax_backward(dout, cache):
    """``dx = p * (dout - sum(dout * p, axis))`` — the softmax Jacobian applied to dout."""
    p, axis = cache
    require_dout("softmax", dout, p.shape)
    return p * (dout - (dout * p).sum(axis=axis, keepdims=True))
