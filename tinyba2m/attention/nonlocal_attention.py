"""Embedded-Gaussian non-local attention, batched over samples with matrix products.

Shapes (``N`` samples, ``K`` embedding channels h', ``Q`` query positions H*W, ``M`` key
positions, ``V`` value channels)::

    theta (N, K, Q)   queries          phi (N, K, M)   keys          g (N, V, M)   values

Forward::

    S   = theta^T phi          (N, Q, M)    S[n, q, m] = sum_k theta[n, k, q] phi[n, k, m]
    P   = softmax_m(S)         (N, Q, M)    every row (one query) sums to 1 over the M keys
    out = P g^T                (N, Q, V)    out[n, q, v] = sum_m P[n, q, m] g[n, v, m]

Backward (``dout`` of shape (N, Q, V))::

    dg     = dout^T P          (N, V, M)
    dP     = dout g            (N, Q, M)
    dS     = P * (dP - r)      r[n, q] = sum_m dP P = sum_v dout[n, q, v] out[n, q, v]
    dtheta = phi dS^T          (N, K, Q)
    dphi   = theta dS          (N, K, M)

The row sums ``r`` come from the small ``out`` rather than from another pass over the
(N, Q, M) matrix. The cache keeps exactly one (N, Q, M) array (``P``); backward builds one more
(``dS``, in place over ``dP``). Everything is a batched ``matmul``: no loop over samples or
positions.

The BA²M global branch calls this op with ``V = 1``: the values are projected to one channel
*before* the attention product, which is exact because a linear map with bias commutes with
averaging by rows that sum to one:  ``W_z (P G) + b_z = P (G w_z + b_z)``.
"""
from __future__ import annotations

from .. import backend
from ..ops.validation import require_float, require_ndim

OP = "nonlocal_attention"


def _check(theta, phi, g):
    require_ndim(OP, "theta", theta, 3, "(N, K, Q)")
    require_ndim(OP, "phi", phi, 3, "(N, K, M)")
    require_ndim(OP, "g", g, 3, "(N, V, M)")
    for name, arr in (("theta", theta), ("phi", phi), ("g", g)):
        require_float(OP, name, arr)
    n, k, _ = theta.shape
    if tuple(phi.shape[:2]) != (n, k):
        raise ValueError(f"{OP}: phi must be (N, K, M) = ({n}, {k}, M) to match theta {tuple(theta.shape)}, got {tuple(phi.shape)}")
    if g.shape[0] != n or g.shape[2] != phi.shape[2]:
        raise ValueError(f"{OP}: g must be (N, V, M) = ({n}, V, {phi.shape[2]}) to match phi {tuple(phi.shape)}, got {tuple(g.shape)}")


def attention_weights(theta, phi):
    """``softmax_m(theta^T phi)``, shape (N, Q, M), computed in place in one buffer."""
    xp = backend.array_module(theta, phi)
    s = xp.matmul(theta.transpose(0, 2, 1), phi)
    s -= s.max(axis=2, keepdims=True)
    xp.exp(s, out=s)
    s *= 1.0 / s.sum(axis=2, keepdims=True)
    return s


def nonlocal_attention_forward(theta, phi, g):
    """``out = softmax_m(theta^T phi) g^T``: theta (N, K, Q), phi (N, K, M), g (N, V, M) ->
    out (N, Q, V). Returns (out, cache)."""
    _check(theta, phi, g)
    xp = backend.array_module(theta, phi, g)
    p = attention_weights(theta, phi)
    out = xp.matmul(p, g.transpose(0, 2, 1))
    return out, (theta, phi, g, p, out)


def nonlocal_attention_backward(dout, cache):
    """Returns (dtheta (N, K, Q), dphi (N, K, M), dg (N, V, M))."""
    theta, phi, g, p, out = cache
    xp = backend.array_module(dout, p)
    dg = xp.matmul(dout.transpose(0, 2, 1), p)
    r = (dout * out).sum(axis=2, keepdims=True)           # (N, Q, 1)
    ds = xp.matmul(dout, g)                                # dP, (N, Q, M)
    ds -= r
    ds *= p                                                # dS = P * (dP - r)
    dtheta = xp.matmul(phi, ds.transpose(0, 2, 1))
    dphi = xp.matmul(theta, ds)
    return dtheta, dphi, dg
