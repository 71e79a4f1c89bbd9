"""Fully connected layer and flatten.

linear:  out = x @ w + b          x (N, D), w (D, M), b (M,)  ->  out (N, M)
         dx = dout @ w.T,  dw = x.T @ dout,  db = sum_n dout
flatten: (N, d1, d2, ...) -> (N, d1*d2*...), backward reshapes back.
"""
from __future__ import annotations

import math

from .validation import require_dout, require_float, require_ndim


def linear_forward(x, w, b=None):
    """``out = x @ w + b``; x (N, D), w (D, M), b (M,) or None. Returns (out (N, M), cache)."""
    require_ndim("linear", "x", x, 2, "(N, D)")
    require_float("linear", "x", x)
    require_ndim("linear", "w", w, 2, "(D, M)")
    require_float("linear", "w", w, check_finite=False)
    if b is not None:
        require_float("linear", "b", b, check_finite=False)
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"linear: x has {x.shape[1]} features but w expects {w.shape[0]} (x shape {tuple(x.shape)}, w shape {tuple(w.shape)})")
    if b is not None and tuple(b.shape) != (w.shape[1],):
        raise ValueError(f"linear: expected bias of shape ({w.shape[1]},), got {tuple(b.shape)}")
    out = x @ w
    if b is not None:
        out = out + b
    return out, (x, w, b is not None)


def linear_backward(dout, cache):
    """Returns (dx (N, D), dw (D, M), db (M,) or None)."""
    x, w, has_bias = cache
    require_dout("linear", dout, (x.shape[0], w.shape[1]))
    dx = dout @ w.T
    dw = x.T @ dout
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db


def flatten_forward(x):
    """(N, ...) -> (N, prod(...)). Returns (out, cache)."""
    require_ndim("flatten", "x", x, tuple(range(1, 9)))
    require_float("flatten", "x", x, check_finite=False)
    return x.reshape(x.shape[0], math.prod(x.shape[1:])), x.shape


def flatten_backward(dout, cache):
    """Returns dx shaped like x: dout (N, prod(...)) reshaped back."""
    require_dout("flatten", dout, (cache[0], math.prod(cache[1:])))
    return dout.reshape(cache)
