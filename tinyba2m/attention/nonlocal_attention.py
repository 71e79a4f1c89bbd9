"""Embedded-Gaussian non-local attention, batched over samples with matrix products.

Shapes (``N`` samples, ``K`` embedding channels h', ``Q`` query positions H*W, ``M`` key
positions, ``V`` value channels)::

    theta (N, K, Q)   queries          phi (N, K, M)   keys          g (N, V, M)   values

What it computes::

    S   = theta^T phi          (N, Q, M)    S[n, q, m] = sum_k theta[n, k, q] phi[n, k, m]
    P   = softmax_m(S)         (N, Q, M)    every row (one query) sums to 1 over the M keys
    out = P g^T                (N, Q, V)    out[n, q, v] = sum_m P[n, q, m] g[n, v, m]

Textbook backward (``nonlocal_attention_backward_reference``), with ``dout`` (N, Q, V)::

    dg = dout^T P        dP = dout g        dS = P * (dP - r),  r[q] = sum_m dP P = sum_v dout out
    dtheta = phi dS^T    dphi = theta dS

How the fast pair does it. The (N, Q, M) matrix is the hot spot (128 x 1024 x 256 at CIFAR
size), so every pass over it counts:

* Forward keeps ``E`` unnormalised: ``E = exp(S - c)`` with a per-query shift ``c`` that the
  softmax ignores. Instead of the row maximum (two more passes over the matrix) ``c_q`` is the
  row mean, obtained for free by centring the keys: ``theta_q . (phi_m - mean(phi))``; rows whose
  spread is too large for that are redone with their maximum (``unnormalised_attention``). The
  products ``E g^T`` and ``E 1`` give the numerators and the row sums ``Z`` (matrix-vector
  products, faster than a reduction), and ``out = (E g^T) / Z``. ``P = E / Z`` is never formed.
* Backward never builds dP or dS. Because ``dP = dout g`` has rank V, each use of dS factors into
  a product with E and a small correction (``dz = dout / Z``, ``rz = r / Z``)::

      dtheta^T[q, k] = sum_v dz[q, v] (E F_v^T)[q, k] - rz[q] (E phi^T)[q, k],  F_v = g_v * phi
      dphi[k, m]     = sum_v g[v, m] (L_v E)[k, m] - (L_r E)[k, m],
                       L_v[k, q] = theta[k, q] dz[q, v],  L_r[k, q] = theta[k, q] rz[q]
      dg[v, m]       = (dz^T E)[v, m]

  so backward is two batched products reading E once each: ``E @ [F_1..F_V, phi]^T`` and
  ``[L_1..L_V, L_r, dz^T] @ E``.

The cache holds one (N, Q, M) array (E) and the small rest; nothing loops over samples or
positions. The BA²M global branch calls this op with V = 1: the values are projected to one
channel *before* the attention product, exact because a linear map with bias commutes with
averaging by rows that sum to one:  ``W_z (P G) + b_z = P (G w_z + b_z)``.
"""
from __future__ import annotations

import math

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


# A row whose largest shifted score exceeds this is recomputed with its exact maximum (see below).
MAX_SHIFTED_SCORE = 50.0


def unnormalised_attention(theta, phi):
    """``E = exp(theta^T (phi - mean_m phi))`` (N, Q, M) and its row sums ``Z`` (N, Q).

    Centring the keys subtracts ``theta_q . mean(phi)`` — the mean of row q of S — from every
    score of query q, which the softmax ignores. So every row has a non-negative maximum (the
    largest term is >= 1: nothing underflows) without the two passes a row maximum costs (find
    it, subtract it). A row whose sum exceeds ``e^50`` — a score spread above 50, or an overflow —
    is recomputed with its exact maximum; only such rows pay for it.
    """
    xp = backend.array_module(theta, phi)
    n, _, m = phi.shape
    e = xp.matmul(theta.transpose(0, 2, 1), phi - phi.mean(axis=2, keepdims=True))
    with backend.numpy_module.errstate(over="ignore", invalid="ignore"):       # overflowing rows are redone
        xp.exp(e, out=e)
        z = xp.matmul(e, xp.ones((n, m, 1), dtype=e.dtype))[:, :, 0]           # row sums
    bad = ~(z <= math.exp(MAX_SHIFTED_SCORE))                                   # too large, inf or nan
    if bool(bad.any()):
        rows, queries = xp.nonzero(bad)
        s = xp.matmul(theta[rows, :, queries][:, None, :], phi[rows])[:, 0, :]   # (B, M) exact scores
        s = xp.exp(s - s.max(axis=1, keepdims=True))
        e[rows, queries] = s
        z[rows, queries] = s.sum(axis=1)
    return e, z


def nonlocal_attention_forward(theta, phi, g):
    """``out = softmax_m(theta^T phi) g^T``: theta (N, K, Q), phi (N, K, M), g (N, V, M) ->
    out (N, Q, V). Returns (out, cache)."""
    _check(theta, phi, g)
    xp = backend.array_module(theta, phi, g)
    e, z = unnormalised_attention(theta, phi)
    out = xp.matmul(e, xp.ascontiguousarray(g.transpose(0, 2, 1)))            # (N, Q, V) numerators
    out /= z[:, :, None]
    return out, (theta, phi, g, e, z, out)


def nonlocal_attention_backward(dout, cache):
    """Returns (dtheta (N, K, Q), dphi (N, K, M), dg (N, V, M)); two products reading E."""
    theta, phi, g, e, z, out = cache
    xp = backend.array_module(dout, e)
    n, k, q = theta.shape
    v, m = g.shape[1], g.shape[2]
    dz = dout / z[:, :, None]                                                 # (N, Q, V)
    rz = (dout * out).sum(axis=2) / z                                         # (N, Q)
    dzt = dz.transpose(0, 2, 1)                                               # (N, V, Q)
    # left factors: [theta * dz_v for each v] (V*K rows), theta * rz (K rows), dz^T (V rows)
    left = xp.concatenate([(theta[:, None, :, :] * dzt[:, :, None, :]).reshape(n, v * k, q),
                           theta * rz[:, None, :], dzt], axis=1)
    h = xp.matmul(left, e)                                                    # (N, V*K + K + V, M)
    dphi = (g[:, :, None, :] * h[:, :v * k].reshape(n, v, k, m)).sum(axis=1) - h[:, v * k:v * k + k]
    dg = h[:, v * k + k:]
    # right factors: [g_v * phi for each v] (V*K rows), phi (K rows)
    right = xp.concatenate([(g[:, :, None, :] * phi[:, None, :, :]).reshape(n, v * k, m), phi], axis=1)
    t = xp.matmul(e, right.transpose(0, 2, 1))                                # (N, Q, V*K + K)
    dtheta_t = (dz[:, :, :, None] * t[:, :, :v * k].reshape(n, q, v, k)).sum(axis=2) - rz[:, :, None] * t[:, :, v * k:]
    return dtheta_t.transpose(0, 2, 1), dphi, dg


def nonlocal_attention_backward_reference(dout, cache):
    """The textbook backward through P and dS (builds two (N, Q, M) arrays); same results."""
    theta, phi, g, e, z, out = cache
    xp = backend.array_module(dout, e)
    p = e / z[:, :, None]
    dg = xp.matmul(dout.transpose(0, 2, 1), p)
    ds = p * (xp.matmul(dout, g) - (dout * out).sum(axis=2, keepdims=True))
    return xp.matmul(phi, ds.transpose(0, 2, 1)), xp.matmul(theta, ds), dg
