"""Turn the SAR scalars into per-sample weights and scale each sample by its weight.

Batch softmax weighting (the batch-aware part of BA²M), over the batch axis::

    w = N * softmax(a / tau)           w (N,), mean(w) = 1 exactly
    Y_i = w_i * X_i                    X (N, ...) -> Y (N, ...)

The factor N keeps the average weight at 1: a plain softmax sums to 1 and would shrink every
sample by about 1/N. The weights couple the samples::

    dw_i/da_j = (w_i / tau) * (delta_ij - w_j / N)

so with ``gw_i = sum(dY_i * X_i)`` (the gradient reaching w_i)::

    dX_i = w_i * dY_i
    da_j = sum_i gw_i dw_i/da_j = (w_j / tau) * (gw_j - (1/N) sum_i gw_i w_i)

Sigmoid weighting (the ablation without coupling), per sample::

    w_i = 2 * sigmoid(a_i / tau)       w in (0, 2), w = 1 at a = 0
    dw_i/da_j = delta_ij * (w_i / tau) * (1 - w_i / 2)
"""
from __future__ import annotations

from ..ops.activations import softmax, stable_sigmoid
from ..ops.validation import require_float, require_ndim


def _check(op, x, a, temperature):
    if getattr(x, "ndim", 0) < 1:
        raise ValueError(f"{op}: expected x of shape (N, ...), got {getattr(x, 'shape', type(x).__name__)}")
    require_float(op, "x", x, check_finite=False)
    require_ndim(op, "a", a, 1, "(N,)")
    require_float(op, "a", a)
    if a.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: a has {a.shape[0]} entries but x has batch size {x.shape[0]} (x shape {tuple(x.shape)})")
    if not float(temperature) > 0:
        raise ValueError(f"{op}: temperature must be > 0, got {temperature!r}")


def _scale(x, w):
    """``w_i * X_i`` for X (N, ...) and w (N,), in the dtype of x."""
    return x * w.astype(x.dtype, copy=False).reshape((-1,) + (1,) * (x.ndim - 1))


def _gw(dy, x):
    """``gw_i = sum(dY_i * X_i)``, shape (N,)."""
    n = x.shape[0]
    return (dy.reshape(n, -1) * x.reshape(n, -1)).sum(axis=1)


def batch_softmax_weights(a, temperature=1.0):
    """``w = N * softmax(a / tau)`` (N,)."""
    return a.shape[0] * softmax(a / temperature, axis=0)


def batch_softmax_weighting_forward(x, a, temperature=1.0):
    """``Y_i = w_i X_i`` with ``w = N softmax(a / tau)``; x (N, ...), a (N,). Returns (Y, cache);
    the weights are ``cache[1]``."""
    _check("batch_softmax_weighting", x, a, temperature)
    w = batch_softmax_weights(a, float(temperature))
    return _scale(x, w), (x, w, float(temperature))


def batch_softmax_weighting_backward(dy, cache):
    """Returns (dx like x, da (N,)), with the full cross-sample Jacobian of the softmax."""
    x, w, tau = cache
    n = x.shape[0]
    gw = _gw(dy, x).astype(w.dtype, copy=False)
    da = (w / tau) * (gw - (gw * w).sum() / n)
    return _scale(dy, w), da


def sigmoid_weights(a, temperature=1.0):
    """``w = 2 * sigmoid(a / tau)`` (N,); one sample's weight ignores the others."""
    return 2.0 * stable_sigmoid(a / temperature)


def sigmoid_weighting_forward(x, a, temperature=1.0):
    """``Y_i = w_i X_i`` with ``w_i = 2 sigmoid(a_i / tau)``; x (N, ...), a (N,). Returns (Y, cache)."""
    _check("sigmoid_weighting", x, a, temperature)
    w = sigmoid_weights(a, float(temperature))
    return _scale(x, w), (x, w, float(temperature))


def sigmoid_weighting_backward(dy, cache):
    """Returns (dx like x, da (N,)); da_i depends on sample i alone."""
    x, w, tau = cache
    gw = _gw(dy, x).astype(w.dtype, copy=False)
    return _scale(dy, w), gw * (w / tau) * (1.0 - 0.5 * w)
