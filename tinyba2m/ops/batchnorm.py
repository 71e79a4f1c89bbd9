"""Batch normalisation over (N, C) or (N, C, H, W): per channel c, over the m = N (or N*H*W)
values of that channel,

    train:  mu = mean(x),  var = mean((x - mu)^2)  (biased),  inv_std = 1 / sqrt(var + eps)
    eval:   mu, var = the running statistics
            xhat = (x - mu) * inv_std,    out = gamma * xhat + beta.

Running statistics (train mode), returned as new arrays in the cache, never written in place:
    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * m / (m - 1)   (unbiased, as PyTorch)

Backward. dbeta = sum(dout), dgamma = sum(dout * xhat) (sums over everything but the channel).
Eval mode: mu and var are constants, so dx = dout * gamma * inv_std.
Train mode: with g = dout * gamma, xhat depends on x directly and through mu and var:
    dxhat/dx_j = inv_std * (delta_ij - 1/m - xhat_i * xhat_j / m)
(using d mu/dx_j = 1/m and d var/dx_j = 2 (x_j - mu)/m), so
    dx = inv_std / m * (m * g - sum(g) - xhat * sum(g * xhat))
       = gamma * inv_std / m * (m * dout - dbeta - xhat * dgamma).
"""
from __future__ import annotations

from .. import backend
from .validation import require_dout, require_finite, require_float, require_ndim

OP = "batchnorm"


def _check(x, gamma, beta, running_mean, running_var, momentum, eps):
    require_ndim(OP, "x", x, (2, 4), "(N, C) or (N, C, H, W)")
    require_float(OP, "x", x, check_finite=False)
    c = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        require_float(OP, name, v, check_finite=False)
        if tuple(v.shape) != (c,):
            raise ValueError(f"{OP}: channel mismatch: x has {c} channels (shape {tuple(x.shape)}) but {name} has "
                             f"shape {tuple(v.shape)}, expected ({c},)")
    require_finite(OP, x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"{OP}: momentum must be in [0, 1], got {momentum}")
    if not float(eps) > 0.0:
        raise ValueError(f"{OP}: eps must be > 0, got {eps}")


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch norm of x (N, C) or (N, C, H, W); gamma, beta, running_mean, running_var (C,).

    Returns (out shaped like x, cache). Does not modify running_mean / running_var; in training
    mode ``cache["running_mean"]`` and ``cache["running_var"]`` hold their updated values.
    """
    _check(x, gamma, beta, running_mean, running_var, momentum, eps)
    xp = backend.array_module(x)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)        # the reduction axes
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)   # the broadcast shape of a per-channel vector
    m = x.size // x.shape[1]
    cache = {"training": bool(training), "axes": axes, "bshape": bshape, "m": m, "gamma": gamma}
    if training:
        if m < 2:
            raise ValueError(f"{OP}: training mode needs more than one value per channel to estimate a variance, "
                             f"got x of shape {tuple(x.shape)}")
        mu = x.mean(axis=axes)
        xc = x - mu.reshape(bshape)
        var = channel_dot(xc, xc) / m
        mom = float(momentum)
        rdt = running_mean.dtype
        cache["running_mean"] = ((1 - mom) * running_mean + mom * mu).astype(rdt, copy=False)
        cache["running_var"] = ((1 - mom) * running_var + mom * var * (m / (m - 1))).astype(rdt, copy=False)
    else:
        mu, var = running_mean, running_var
        xc = x - mu.reshape(bshape)
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    xhat = xp.multiply(xc, inv_std.reshape(bshape), out=xc)      # in place: xc is ours
    out = xhat * gamma.reshape(bshape)
    out += beta.reshape(bshape)
    cache["xhat"], cache["inv_std"] = xhat, inv_std
    return out, cache


def channel_dot(a, b):
    """``sum(a * b)`` over every axis but the channel axis 1, shape (C,): one pass, no (N, C, ...)
    temporary."""
    xp = backend.array_module(a, b)
    n, c = a.shape[:2]
    return xp.einsum("ncx,ncx->c", a.reshape(n, c, -1), b.reshape(n, c, -1))


def batchnorm_backward(dout, cache):
    """Returns (dx shaped like x, dgamma (C,), dbeta (C,)); see the module docstring for the maths."""
    require_dout(OP, dout, cache["xhat"].shape)
    axes, bshape, m = cache["axes"], cache["bshape"], cache["m"]
    xhat, inv_std, gamma = cache["xhat"], cache["inv_std"], cache["gamma"]
    dbeta = dout.sum(axis=axes)
    dgamma = channel_dot(dout, xhat)
    scale = (gamma * inv_std).reshape(bshape)
    if not cache["training"]:
        return dout * scale, dgamma, dbeta
    # dx = scale * dout - (scale / m) * (dbeta + xhat * dgamma), in three passes over dout's size
    dx = dout * scale
    dx -= xhat * (scale * dgamma.reshape(bshape) / m)
    dx -= scale * dbeta.reshape(bshape) / m
    return dx, dgamma, dbeta
