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

* Forward keeps ``E`` unnormalised: ``E = exp(S - c)`` with ``c_q = max_m S[q, m]``, the row
  maximum (the softmax ignores any per-query shift; the maximum makes the largest term of every
  row exactly 1, so nothing overflows and the row sums lie in [1, M]). The scores are computed,
  shifted and exponentiated in place in one (N, Q, M) array (``unnormalised_attention``); shifted
  scores below ``score_floor`` (e^f = eps^2.5) are raised to it first, which changes nothing
  beyond rounding but keeps subnormal numbers (slow on CPUs) out of E and its products.
  ``P = E / Z`` is never formed.
* Each row's maximum is split off. It is exactly 1, at the key ``m*_q`` (the argmax, found in
  the same pass as the maximum), so ``E = E' + 1[m = m*]`` where ``E'`` is E with that entry set
  to 0 — the one (N, Q, M) array the cache keeps. One product ``E' [g^T, 1]`` gives
  ``E' g^T`` and ``z' = E' 1``; then ``Z = 1 + z'``, ``out = (g[m*] + E' g^T) / Z`` and, for the
  backward, ``c = g[m*] - out = (g[m*] z' - E' g^T) / Z``, all without cancellation.
* Backward never builds dP or dS. Because ``dP = dout g`` has rank V, each use of dS factors into
  a product with E' and a small correction (``dz = dout / Z``, ``rz = r / Z``), plus the share of
  the split-off maxima, ``w[q] = sum_v dz[q, v] c_v[q]``::

      dtheta^T[q, k] = sum_v dz[q, v] (E' F_v^T)[q, k] - rz[q] (E' phi^T)[q, k] + w[q] phi[k, m*_q],
                       F_v = g_v * phi
      dphi[k, m]     = sum_v g[v, m] (L_v E')[k, m] - (L_r E')[k, m] + sum_{q: m*_q = m} theta[k, q] w[q],
                       L_v[k, q] = theta[k, q] dz[q, v],  L_r[k, q] = theta[k, q] rz[q]
      dg[v, m]       = (dz^T E')[v, m] + sum_{q: m*_q = m} dz[q, v]

  so backward is two batched products reading E' once each, ``E' @ [F_1..F_V, phi]^T`` and
  ``[L_1..L_V, L_r, dz^T] @ E'``, a gather of phi at m* and one scatter-add (``xp.add.at``) over q.
  Why the split: with E itself, the two terms of dtheta (and of dphi) both tend to
  ``dz g[m*] phi[m*]`` as a row becomes one-hot, and their difference keeps a rounding error of
  ``eps |dout| |g| |phi|`` however small the gradient (relative errors of 1e-2 to 0.4 in float32
  on sharp rows). With E' both terms shrink with the gradient; ``c`` carries the rest exactly.

The cache holds one (N, Q, M) array (E') and the small rest; nothing loops over samples or
positions. The BA²M global branch calls this op with V = 1: the values are projected to one
channel *before* the attention product, exact because a linear map with bias commutes with
averaging by rows that sum to one:  ``W_z (P G) + b_z = P (G w_z + b_z)``.
"""
from __future__ import annotations

import math

from .. import backend, hostpool
from ..ops.validation import require_dout, require_float, require_ndim

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


def score_floor(xp, dtype) -> float:
    """The floor ``f`` under which shifted scores are raised before the exponential: e^f = eps^2.5
    (f = -39.8 in float32, -90.1 in float64).

    Rounding: a row of E has a largest term 1, so its sum is >= 1, and raising M terms to e^f
    changes it by at most M eps^2.5 < eps (for any M < eps^-1.5, 2e10 in float32): results are
    unchanged to rounding. Speed: no entry of E is subnormal (float32 subnormals start at 1.2e-38,
    e^f is 4.9e-18), nor are its products with the small factors of the backward pass. x86 CPUs
    handle subnormals some ten times slower (microcode assists) in exp and in matrix products, and
    a trained network's stage-1 scores spread over hundreds (docs/BA2M.md section 7).
    """
    return 2.5 * math.log(float(xp.finfo(dtype).eps))


def unnormalised_attention(theta, phi, out=None):
    """``E = exp(max(S - max_m S, f))`` (N, Q, M), ``S = theta^T phi``, ``f = score_floor``:
    theta (N, K, Q), phi (N, K, M). Every row's largest entry is exactly 1.

    Five passes over one (N, Q, M) array: the product, the row maximum (argmax), then in place the shift,
    the floor and the exponential. ``out``, if given, is a C-contiguous (N, Q, M) array of the
    result's dtype that receives E (a workspace reused across calls).
    """
    return _unnormalised_attention_and_argmax(theta, phi, out)[0]


def _unnormalised_attention_and_argmax(theta, phi, out=None):
    """``(E, m*)``: E as in :func:`unnormalised_attention` and ``m*`` (N, Q), the key of each
    row's maximum (the first on ties), where ``E[n, q, m*[n, q]] == 1`` exactly. The row maximum
    is read at the argmax (one pass, as fast as ``max``)."""
    xp = backend.array_module(theta, phi)
    e = xp.matmul(theta.transpose(0, 2, 1), phi, out=out)
    if out is not None:
        e = out  # CuPy 13's matmul(out=) fills out but returns a new view of it; keep out itself
    top = e.argmax(axis=2)
    e -= xp.take_along_axis(e, top[:, :, None], axis=2)
    xp.maximum(e, score_floor(xp, e.dtype), out=e)
    xp.exp(e, out=e)
    return e, top


E_CHUNK_BYTES = 2 ** 20  # bytes of E per chunk, about the L2 cache: one chunk of E makes all its passes there


def sample_chunks(e):
    """Slices of the batch for ``e`` (N, Q, M) (``hostpool.chunk_slices``): on the host, groups of
    samples whose part of E takes about ``E_CHUNK_BYTES``, so the product, the row maxima, the
    shift, the floor, the exponential and the products with E read a chunk still in cache instead
    of streaming the whole matrix from memory for each pass (measurements: docs/BA2M.md section 7);
    on a GPU, the whole batch."""
    return hostpool.chunk_slices(e.shape[0], e[:1].nbytes, E_CHUNK_BYTES, like=e)


def nonlocal_attention_forward(theta, phi, g, workspace=None):
    """``out = softmax_m(theta^T phi) g^T``: theta (N, K, Q), phi (N, K, M), g (N, V, M) ->
    out (N, Q, V). Returns (out, cache); the cache holds E' (E without its row maxima, see the
    module docstring), which is ``workspace`` when one is given (a C-contiguous (N, Q, M) array of
    theta's dtype, overwritten here — the caller must not reuse it while it still needs this cache)."""
    _check(theta, phi, g)
    xp = backend.array_module(theta, phi, g)
    n, v, m = g.shape
    q = theta.shape[2]
    e = workspace
    if e is None:
        e = xp.empty((n, q, m), dtype=xp.result_type(theta.dtype, phi.dtype))
    elif tuple(e.shape) != (n, q, m) or e.dtype != theta.dtype or not e.flags.c_contiguous:
        raise ValueError(f"{OP}: workspace must be a C-contiguous {(n, q, m)} array of dtype {theta.dtype}, "
                         f"got shape {tuple(e.shape)} dtype {e.dtype}")
    top = xp.empty((n, q), dtype=xp.int64)
    values_and_ones = xp.concatenate([g.transpose(0, 2, 1), xp.ones((n, m, 1), dtype=e.dtype)], axis=2)  # (N, M, V+1)
    rest = xp.empty((n, q, v + 1), dtype=xp.result_type(e.dtype, values_and_ones.dtype))
    def one_chunk(sl):                          # each chunk of E stays in cache through its passes
        es = e[sl]
        _, top[sl] = _unnormalised_attention_and_argmax(theta[sl], phi[sl], out=es)
        es[xp.arange(es.shape[0])[:, None], xp.arange(q)[None, :], top[sl]] = 0   # E' = E - 1[m = m*]
        xp.matmul(es, values_and_ones[sl], out=rest[sl])                      # (B, Q, V+1): E' g^T and z' = E' 1

    hostpool.map_chunks(one_chunk, sample_chunks(e), like=e)  # side by side on the host's cores
    g_top = xp.take_along_axis(g, top[:, None, :], axis=2).transpose(0, 2, 1)  # (N, Q, V): g at m*
    z = 1 + rest[:, :, v]
    out = (g_top + rest[:, :, :v]) / z[:, :, None]
    gap = (g_top * rest[:, :, v:] - rest[:, :, :v]) / z[:, :, None]           # g[m*] - out, no cancellation
    return out, (theta, phi, g, e, z, out, top, gap)


def scatter_to_keys(rows, top, m):
    """``out[n, r, top[n, q]] += rows[n, r, q]``: rows (N, R, Q), top (N, Q) ints in [0, M) ->
    (N, R, M) of rows' dtype. One scatter-add (``backend.scatter_add``, ``xp.add.at``) over flat
    indices ``(n R + r) M + top[n, q]``: no read from the device (CuPy's ``bincount`` reads the
    maximum index back to size its output)."""
    xp = backend.array_module(rows, top)
    n, r, _ = rows.shape
    out = xp.zeros((n, r, m), dtype=rows.dtype)
    flat = (xp.arange(n)[:, None, None] * (r * m) + xp.arange(r)[None, :, None] * m + top[:, None, :]).reshape(-1)
    backend.scatter_add(out.reshape(-1), flat, rows.reshape(-1))
    return out


def nonlocal_attention_backward(dout, cache):
    """Returns (dtheta (N, K, Q), dphi (N, K, M), dg (N, V, M)): two products reading E', the
    row maxima's share added exactly (see the module docstring)."""
    theta, phi, g, e, z, out, top, gap = cache
    require_dout(OP, dout, out.shape)
    xp = backend.array_module(dout, e)
    n, k, q = theta.shape
    v, m = g.shape[1], g.shape[2]
    dz = dout / z[:, :, None]                                                 # (N, Q, V)
    rz = (dout * out).sum(axis=2) / z                                         # (N, Q)
    w = (dz * gap).sum(axis=2)                                                # (N, Q): the maxima's share
    dzt = dz.transpose(0, 2, 1)                                               # (N, V, Q)
    # left factors: [theta * dz_v for each v] (V*K rows), theta * rz (K rows), dz^T (V rows)
    left = xp.concatenate([(theta[:, None, :, :] * dzt[:, :, None, :]).reshape(n, v * k, q),
                           theta * rz[:, None, :], dzt], axis=1)
    # right factors: [g_v * phi for each v] (V*K rows), phi (K rows)
    right = xp.concatenate([(g[:, :, None, :] * phi[:, None, :, :]).reshape(n, v * k, m), phi], axis=1)
    h = xp.empty((n, left.shape[1], m), dtype=xp.result_type(left.dtype, e.dtype))
    t = xp.empty((n, q, right.shape[1]), dtype=xp.result_type(right.dtype, e.dtype))
    def one_chunk(sl):                          # both products read a chunk of E' while in cache
        xp.matmul(left[sl], e[sl], out=h[sl])                                 # (B, V*K + K + V, M)
        xp.matmul(e[sl], right[sl].transpose(0, 2, 1), out=t[sl])             # (B, Q, V*K + K)

    hostpool.map_chunks(one_chunk, sample_chunks(e), like=e)  # side by side on the host's cores
    # the maxima: theta * w (K rows) and dz^T (V rows) added into key m*_q
    peaks = scatter_to_keys(xp.concatenate([theta * w[:, None, :], dzt], axis=1), top, m)   # (N, K + V, M)
    dphi = (g[:, :, None, :] * h[:, :v * k].reshape(n, v, k, m)).sum(axis=1) - h[:, v * k:v * k + k] + peaks[:, :k]
    dg = h[:, v * k + k:] + peaks[:, k:]
    dtheta_t = (dz[:, :, :, None] * t[:, :, :v * k].reshape(n, q, v, k)).sum(axis=2) - rz[:, :, None] * t[:, :, v * k:]
    dtheta = dtheta_t.transpose(0, 2, 1) + w[:, None, :] * xp.take_along_axis(phi, top[:, None, :], axis=2)
    return dtheta, dphi, dg


def nonlocal_attention_backward_reference(dout, cache):
    """The textbook backward through P and dS (builds two (N, Q, M) arrays); same results."""
    theta, phi, g, e, z, out, top, _ = cache
    require_dout(OP, dout, out.shape)
    xp = backend.array_module(dout, e)
    n, q = top.shape
    p = e / z[:, :, None]
    p[xp.arange(n)[:, None], xp.arange(q)[None, :], top] += 1 / z                # P = (E' + 1[m = m*]) / Z
    dg = xp.matmul(dout.transpose(0, 2, 1), p)
    ds = p * (xp.matmul(dout, g) - (dout * out).sum(axis=2, keepdims=True))
    return xp.matmul(phi, ds.transpose(0, 2, 1)), xp.matmul(theta, ds), dg
