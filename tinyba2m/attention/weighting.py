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

Sum-to-one softmax (the paper's formula taken literally), ``w = softmax(a / tau)``: the same
with N replaced by 1, ``da_j = (w_j / tau) * (gw_j - sum_i gw_i w_i)``.

Sigmoid weighting (the ablation without coupling), per sample::

    w_i = 2 * sigmoid(a_i / tau)       w in (0, 2), w = 1 at a = 0
    dw_i/da_j = delta_ij * (w_i / tau) * (1 - w_i / 2)

Population weighting (evaluation, ``eval_weighting="population"``): the softmax's normaliser is
a running estimate ``m`` of the training batches' log-mean-exp ``logsumexp(a / tau) - log N``,
so each sample is weighted on its own, on the scale training used::

    w_i = scale * exp(a_i / tau - m)     (scale 1 for "softmax", 1 / N_train for "softmax_sum")
    dw_i/da_j = delta_ij * w_i / tau     (m is a buffer, not a function of this batch)
"""
from __future__ import annotations

from .. import backend
from ..nn.module import Module
from ..ops.activations import softmax, stable_sigmoid
from ..ops.validation import require_dout, require_float, require_ndim


def _check(op, x, a, temperature):
    if getattr(x, "ndim", 0) < 1:
        raise ValueError(f"{op}: expected x of shape (N, ...), got {getattr(x, 'shape', type(x).__name__)}")
    if x.shape[0] == 0:
        raise ValueError(f"{op}: empty batch (x shape {tuple(x.shape)}); the weights need at least one sample")
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


def _weigh(op, x, a, temperature, weights):
    """What every weighting forward does: check, ``w = weights(a, tau)``, ``Y_i = w_i X_i``.
    Returns (Y, cache = (x, w, tau))."""
    _check(op, x, a, temperature)
    tau = float(temperature)
    w = weights(a, tau)
    return _scale(x, w), (x, w, tau)


def _unweigh(op, dy, cache):
    """What every weighting backward starts with: (dX = w_i dY_i, gw (N,), w, tau), where
    ``gw_i = sum(dY_i * X_i)`` is the gradient reaching w_i."""
    x, w, tau = cache
    require_dout(op, dy, x.shape)
    n = x.shape[0]
    gw = (dy.reshape(n, -1) * x.reshape(n, -1)).sum(axis=1).astype(w.dtype, copy=False)
    return _scale(dy, w), gw, w, tau


def _coupled_da(gw, w, tau, total):
    """``da_j = (w_j / tau) (gw_j - (1 / total) sum_i gw_i w_i)`` for ``w = total * softmax(a / tau)``."""
    return (w / tau) * (gw - (gw * w).sum() / total)


def batch_softmax_weighting_forward(x, a, temperature=1.0):
    """``Y_i = w_i X_i`` with ``w = N softmax(a / tau)``; x (N, ...), a (N,). Returns (Y, cache);
    the weights are ``cache[1]``."""
    return _weigh("batch_softmax_weighting", x, a, temperature,
                  lambda a, tau: a.shape[0] * softmax(a / tau, axis=0))


def batch_softmax_weighting_backward(dy, cache):
    """Returns (dx like x, da (N,)), with the full cross-sample Jacobian of the softmax."""
    dx, gw, w, tau = _unweigh("batch_softmax_weighting", dy, cache)
    return dx, _coupled_da(gw, w, tau, w.shape[0])


def softmax_sum_weighting_forward(x, a, temperature=1.0):
    """``Y_i = w_i X_i`` with ``w = softmax(a / tau)`` (sums to 1); x (N, ...), a (N,). Returns (Y, cache)."""
    return _weigh("softmax_sum_weighting", x, a, temperature, lambda a, tau: softmax(a / tau, axis=0))


def softmax_sum_weighting_backward(dy, cache):
    """Returns (dx like x, da (N,)); the softmax couples the samples as for the batch softmax."""
    dx, gw, w, tau = _unweigh("softmax_sum_weighting", dy, cache)
    return dx, _coupled_da(gw, w, tau, 1.0)


def batch_log_mean_exp(a, temperature=1.0):
    """``logsumexp(a / tau) - log N`` of a batch's SARs a (N,), a 0-d array: in training
    ``w = N softmax(a / tau) = exp(a / tau - this)``. Shifted by the max, so it never overflows."""
    xp = backend.array_module(a)
    z = a / float(temperature)
    top = z.max()
    return top + xp.log(xp.exp(z - top).mean())


def population_weighting_forward(x, a, log_norm, temperature=1.0, scale=1.0):
    """``Y_i = w_i X_i`` with ``w_i = scale * exp(a_i / tau - log_norm)``, per sample; x (N, ...),
    a (N,), log_norm a scalar or (1,) array (the running log-mean-exp). Returns (Y, cache)."""
    if hasattr(log_norm, "dtype"):
        require_float("population_weighting", "log_norm", log_norm, check_finite=False)

    def weights(a, tau):
        xp = backend.array_module(a)
        return float(scale) * xp.exp(a / tau - xp.asarray(log_norm, dtype=a.dtype).reshape(()))
    return _weigh("population_weighting", x, a, temperature, weights)


def population_weighting_backward(dy, cache):
    """Returns (dx like x, da (N,)); ``da_i = gw_i w_i / tau`` depends on sample i alone."""
    dx, gw, w, tau = _unweigh("population_weighting", dy, cache)
    return dx, gw * (w / tau)


def sigmoid_weighting_forward(x, a, temperature=1.0):
    """``Y_i = w_i X_i`` with ``w_i = 2 sigmoid(a_i / tau)``; x (N, ...), a (N,). Returns (Y, cache)."""
    return _weigh("sigmoid_weighting", x, a, temperature, lambda a, tau: 2.0 * stable_sigmoid(a / tau))


def sigmoid_weighting_backward(dy, cache):
    """Returns (dx like x, da (N,)); da_i depends on sample i alone."""
    dx, gw, w, tau = _unweigh("sigmoid_weighting", dy, cache)
    return dx, gw * (w / tau) * (1.0 - 0.5 * w)


# -- the weighting as a child module of BA2M --------------------------------------------------------
NORMALISATIONS = {"softmax": (batch_softmax_weighting_forward, batch_softmax_weighting_backward),
                  "softmax_sum": (softmax_sum_weighting_forward, softmax_sum_weighting_backward),
                  "sigmoid": (sigmoid_weighting_forward, sigmoid_weighting_backward)}


class SampleWeighting(Module):
    """``Y_i = w_i X_i``, the weights from the SARs by the op pair of ``normalisation`` or, when
    ``forward`` gets a running log-mean-exp ``log_norm``, by the population op pair.

    ``forward(x (N, ...), a (N,), log_norm=None, scale=1.0) -> Y``; ``backward(dY) -> (dX, da)``;
    ``last_weights`` holds w (N,) of the last forward pass."""

    def __init__(self, normalisation: str = "softmax", temperature: float = 1.0):
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"SampleWeighting: normalisation must be one of {tuple(NORMALISATIONS)}, got {normalisation!r}")
        self.normalisation, self.temperature = normalisation, float(temperature)
        self.last_weights = None

    def forward(self, x, a, log_norm=None, scale=1.0):
        self.cache = None
        if log_norm is None:
            forward, backward = NORMALISATIONS[self.normalisation]
            y, cache = forward(x, a, self.temperature)
        else:
            forward, backward = population_weighting_forward, population_weighting_backward
            y, cache = forward(x, a, log_norm, self.temperature, scale)
        self.last_weights = cache[1]
        return self.keep(y, (backward, cache))

    def backward(self, dy):
        backward, cache = self.saved(dy)
        return backward(dy, cache)

    def extra_repr(self):
        return f"normalisation={self.normalisation!r}, temperature={self.temperature}"
