"""Numerical derivatives and the error measure the checker uses.

- ``numerical_gradient(f, x, dout)``: central differences of the scalar ``sum(f(x) * dout)``,
  one coordinate at a time: ``(L(x + h e_k) - L(x - h e_k)) / 2h``. Needs float64.
- ``directional_derivative(f, xs, directions)``: the same along one random direction for all
  inputs at once — two evaluations whatever the size, for tensors too big to walk.
- ``relative_error(a, n)``: ``||a - n|| / max(||a|| + ||n||, tiny)`` (norms over all elements).
"""
from __future__ import annotations

from .. import backend

TINY = 1e-30


def relative_error(analytic, numeric, tiny: float = TINY) -> float:
    """``||a - n|| / max(||a|| + ||n||, tiny)``; 0 when both are exactly zero."""
    a = backend.to_host(analytic).astype(backend.float64).ravel()
    n = backend.to_host(numeric).astype(backend.float64).ravel()
    if a.shape != n.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} vs {n.shape}")
    xp = backend.numpy_module
    num = float(xp.linalg.norm(a - n))
    den = max(float(xp.linalg.norm(a)) + float(xp.linalg.norm(n)), tiny)
    return num / den


def scalarize(out, dout) -> float:
    """``sum(out * dout)`` as a Python float (the scalar loss the checker differentiates)."""
    return float((out * dout).sum())


def numerical_gradient(f, x, dout, h: float = 1e-6):
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    ``f`` maps the array ``x`` to an array shaped like ``dout``; ``x`` is perturbed in place and
    restored, so it must be float64 for the result to mean anything. On a device the only read is
    the one copy of ``x``'s values: the differences are formed on the device.
    """
    if backend.dtype_of(x) != backend.float64:
        raise ValueError(f"numerical_gradient: x must be float64 for a meaningful check, got {backend.dtype_of(x)}")
    xp = backend.array_module(x)
    grad = xp.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    host = backend.to_host(flat).copy()  # the original values, read once (one device-to-host copy)
    for k in range(flat.size):
        old = float(host[k])
        flat[k] = old + h
        plus = (f(x) * dout).sum()   # kept on the device: no read per coordinate
        flat[k] = old - h
        minus = (f(x) * dout).sum()
        flat[k] = old
        gflat[k] = (plus - minus) / (2 * h)
    return grad


def directional_derivative(f, xs, directions, dout, h: float = 1e-6) -> float:
    """Central difference of ``sum(f(*xs) * dout)`` along ``directions`` (one array per input)."""
    plus = [x + h * d for x, d in zip(xs, directions)]
    minus = [x - h * d for x, d in zip(xs, directions)]
    return (scalarize(f(*plus), dout) - scalarize(f(*minus), dout)) / (2 * h)
