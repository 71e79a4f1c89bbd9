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

Fused with a ReLU (``batchnorm_relu_forward`` / ``_backward``, what a conv block runs):
    out = max(y, 0),  y = gamma * xhat + beta.
The ReLU's gradient is dy = dout * [y > 0], and y > 0 exactly where out > 0, so the cache keeps
``out`` itself (the array handed to the next layer, never written afterwards: ops do not modify
their inputs) instead of a mask, and the backward is batch norm's with dout replaced by
    dy = dout * [out > 0]:
    dbeta = sum(dy),  dgamma = sum(dy * xhat),  dx = gamma * inv_std / m * (m * dy - dbeta - xhat * dgamma).
The pair reads and writes each (N, C, H, W) array once per pass where batch norm then ReLU
would make two more passes (the ReLU forward reading y and writing out and the mask, its backward
reading dout and the mask).

Speed (host). The passes run on sample chunks (contiguous blocks of x, ``hostpool.chunk_slices``,
about ``CHUNK_BYTES`` each, at least one per host thread) side by side on the host pool
(``hostpool.map_chunks``): the sums over the batch are partial sums per chunk, added up between
the passes (train mode: sum(x) -> mu, then x - mu and sum((x - mu)^2) -> var, then the scale and
shift; backward: dbeta and dgamma, then dx). Channel chunks were measured slower on one thread
(strided views). On a GPU: one chunk, and the fused pair's elementwise passes are one CUDA kernel
each (see :func:`_device_kernels`).
"""
from __future__ import annotations

import functools

from .. import backend, hostpool
from .validation import require_dout, require_finite, require_float, require_ndim

OP = "batchnorm"


def _check(x, gamma, beta, running_mean, running_var, momentum, eps, op=OP):
    require_ndim(op, "x", x, (2, 4), "(N, C) or (N, C, H, W)")
    require_float(op, "x", x, check_finite=False)
    c = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        require_float(op, name, v, check_finite=False)
        if tuple(v.shape) != (c,):
            raise ValueError(f"{op}: channel mismatch: x has {c} channels (shape {tuple(x.shape)}) but {name} has "
                             f"shape {tuple(v.shape)}, expected ({c},)")
    require_finite(op, x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"{op}: momentum must be in [0, 1], got {momentum}")
    if not float(eps) > 0.0:
        raise ValueError(f"{op}: eps must be > 0, got {eps}")


CHUNK_BYTES = 2 ** 22  # bytes of x per sample chunk (one chunk per host thread at ResNet-20's batch 128)
POOL_MIN_BYTES = hostpool.POOL_MIN_BYTES  # a smaller x is one chunk


def sample_chunks(x):
    """Slices of the batch axis of x handled per step (see the module docstring)."""
    return hostpool.sample_chunks(x, CHUNK_BYTES, POOL_MIN_BYTES)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch norm of x (N, C) or (N, C, H, W); gamma, beta, running_mean, running_var (C,).

    Returns (out shaped like x, cache). Does not modify running_mean / running_var; in training
    mode ``cache["running_mean"]`` and ``cache["running_var"]`` hold their updated values.
    """
    return _normalise(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu=False)


def batchnorm_relu_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """``max(batchnorm(x), 0)`` in one op pair (the module docstring derives its backward); same
    arguments, shapes and running statistics as :func:`batchnorm_forward`. Returns (out, cache)."""
    return _normalise(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu=True)


OP_RELU = "batchnorm_relu"


def _normalise(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu):
    op = OP_RELU if relu else OP
    _check(x, gamma, beta, running_mean, running_var, momentum, eps, op)
    xp = backend.array_module(x)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)        # the reduction axes
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)   # the broadcast shape of a per-channel vector
    m = x.size // x.shape[1]
    if training and m < 2:
        raise ValueError(f"{op}: training mode needs more than one value per channel to estimate a variance, "
                         f"got x of shape {tuple(x.shape)}")
    chunks = sample_chunks(x)
    xhat = xp.empty(x.shape, dtype=x.dtype)
    out = xp.empty(x.shape, dtype=xp.result_type(x.dtype, gamma.dtype, beta.dtype))
    if training:
        mu = hostpool.total(hostpool.map_chunks(lambda sl: x[sl].sum(axis=axes), chunks, like=x)) / m

        def centre(sl):
            """xhat[sl] = x[sl] - mu for now; returns this chunk's sum of squares per channel."""
            xh = xhat[sl]
            xp.subtract(x[sl], mu.reshape(bshape), out=xh)
            return channel_dot(xh, xh)

        var = hostpool.total(hostpool.map_chunks(centre, chunks, like=x)) / m
    else:
        mu, var = running_mean, running_var
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    mu_b, inv_b, g, b = (v.reshape(bshape) for v in (mu.astype(x.dtype, copy=False), inv_std, gamma, beta))
    kernels = _device_kernels(xp) if relu and len({x.dtype, gamma.dtype, beta.dtype}) == 1 else None
    if kernels is not None:                          # GPU: one kernel writes xhat and out
        kernels[0](x, mu_b, inv_b, g, b, xhat, out)
    else:
        def scale_shift(sl):
            xh, o = xhat[sl], out[sl]
            if not training:
                xp.subtract(x[sl], mu_b, out=xh)
            xh *= inv_b
            xp.multiply(xh, g, out=o)
            o += b
            if relu:
                xp.maximum(o, 0, out=o)

        hostpool.map_chunks(scale_shift, chunks, like=x)
    cache = {"training": bool(training), "axes": axes, "bshape": bshape, "m": m, "gamma": gamma,
             "xhat": xhat, "inv_std": inv_std, "relu_out": out if relu else None}
    if training:
        mom = float(momentum)
        rdt = running_mean.dtype
        cache["running_mean"] = ((1 - mom) * running_mean + mom * mu).astype(rdt, copy=False)
        cache["running_var"] = ((1 - mom) * running_var + mom * var * (m / (m - 1))).astype(rdt, copy=False)
    return out, cache


def channel_dot(a, b):
    """``sum(a * b)`` over every axis but the channel axis 1, shape (C,): one pass, no (N, C, ...)
    temporary."""
    xp = backend.array_module(a, b)
    n, c = a.shape[:2]
    return xp.einsum("ncx,ncx->c", a.reshape(n, c, -1), b.reshape(n, c, -1))


def batchnorm_backward(dout, cache):
    """Returns (dx shaped like x, dgamma (C,), dbeta (C,)); see the module docstring for the maths."""
    return _normalise_grads(dout, cache)


def batchnorm_relu_backward(dout, cache):
    """Gradients of :func:`batchnorm_relu_forward`: (dx, dgamma (C,), dbeta (C,)), batch norm's
    with dout masked by out > 0 (the module docstring)."""
    return _normalise_grads(dout, cache)


def _normalise_grads(dout, cache):
    require_dout(OP if cache["relu_out"] is None else OP_RELU, dout, cache["xhat"].shape)
    xp = backend.array_module(dout)
    axes, bshape, m, training = cache["axes"], cache["bshape"], cache["m"], cache["training"]
    xhat, inv_std, gamma, relu_out = cache["xhat"], cache["inv_std"], cache["gamma"], cache["relu_out"]
    dx = xp.empty(xhat.shape, dtype=xp.result_type(dout.dtype, xhat.dtype, gamma.dtype))
    dy = dout if relu_out is None else dx            # the fused pair keeps dy = dout * [out > 0] in dx
    chunks = sample_chunks(xhat)

    def sums(sl):
        """This chunk's sum(dy) and sum(dy * xhat) per channel (writing dy into dx[sl] for the fused pair)."""
        if relu_out is not None:
            xp.multiply(dout[sl], relu_out[sl] > 0, out=dx[sl])
        return dy[sl].sum(axis=axes), channel_dot(dy[sl], xhat[sl])

    parts = hostpool.map_chunks(sums, chunks, like=xhat)
    dbeta, dgamma = hostpool.total([p[0] for p in parts]), hostpool.total([p[1] for p in parts])
    scale = (gamma * inv_std).reshape(bshape)
    k1, k0 = scale * dgamma.reshape(bshape) / m, scale * dbeta.reshape(bshape) / m
    same_dtype = relu_out is not None and len({dout.dtype, relu_out.dtype, xhat.dtype, scale.dtype}) == 1
    kernels = _device_kernels(xp) if training and same_dtype else None
    if kernels is not None:                          # GPU: dx in one kernel (the mask again, no aliasing)
        kernels[1](dout, relu_out, xhat, scale, k0, k1, dx)
        return dx, dgamma, dbeta

    def grad(sl):
        """dx = scale * dy (eval), or scale * dy - k0 - xhat * k1 (train; the module docstring)."""
        d = dx[sl]
        xp.multiply(dy[sl], scale, out=d)
        if training:
            d -= k0
            d -= xhat[sl] * k1

    hostpool.map_chunks(grad, chunks, like=xhat)
    return dx, dgamma, dbeta


@functools.cache
def _device_kernels(xp):
    """The fused pair's elementwise passes as CUDA kernels on the CuPy backend (``xp`` is the cupy
    module, handed over by ``backend.array_module``), else None (NumPy: the plain passes above).
    forward: xhat = (x - mu) * inv_std, out = max(gamma * xhat + beta, 0) in one kernel;
    backward: dx = scale * dy - k0 - xhat * k1 with dy = dout * [out > 0], in one kernel (the two
    reductions, over dy, come first). Per-channel vectors come in broadcast as (1, C, 1, 1).
    Only real CuPy compiles them (cupysim and NumPy get None). The suite runs the call sites with
    stand-ins of these two kernels, on NumPy and on cupysim (tests/test_batchnorm_relu.py); the
    CUDA source itself runs only on a GPU (``.ci/gpu``)."""
    if xp is not backend.cupy_module_or_none():
        return None
    forward = xp.ElementwiseKernel(
        "T x, T mu, T inv_std, T gamma, T beta", "T xhat, T out",
        "xhat = (x - mu) * inv_std; T y = gamma * xhat + beta; out = y > (T)0 ? y : (T)0;",
        "tinyba2m_batchnorm_relu_forward")
    backward = xp.ElementwiseKernel(
        "T dout, T out, T xhat, T scale, T k0, T k1", "T dx",
        "T dy = out > (T)0 ? dout : (T)0; dx = scale * dy - k0 - xhat * k1;",
        "tinyba2m_batchnorm_relu_backward")
    return forward, backward
