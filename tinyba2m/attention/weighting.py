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

import collections
import warnings

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
EVAL_WEIGHTINGS = ("population", "batch", "uniform")
POPULATION_MOMENTUM = 0.1


def check_eval_weighting(mode: str) -> str:
    if mode not in EVAL_WEIGHTINGS:
        raise ValueError(f"BA2M: eval_weighting must be one of {EVAL_WEIGHTINGS}, got {mode!r}")
    return mode


Plan = collections.namedtuple("Plan", "mode n_train constant")  # see SampleWeighting.plan


class SampleWeighting(Module):
    """``Y_i = w_i X_i``, the weights from the SARs by the op pair of ``normalisation`` (training,
    ``eval_weighting="batch"``) or the population op pair (``"population"``). Owns the population
    buffers: a softmax's training batch updates ``population_log_norm`` (m, see ``_track_population``)
    and records its size in ``population_batch_size``.

    ``forward(x (N, ...), a (N,), plan=None) -> Y`` for a ``plan(N)`` whose weights depend on a;
    ``backward(dY) -> (dX, da)``; ``last_weights`` holds w (N,) of the last forward pass."""

    optional_buffers = ("population_log_norm", "population_batch_size")  # absent from older checkpoints

    def __init__(self, normalisation: str = "softmax", temperature: float = 1.0, eval_weighting: str = "population"):
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"SampleWeighting: normalisation must be one of {tuple(NORMALISATIONS)}, got {normalisation!r}")
        self.normalisation, self.temperature = normalisation, float(temperature)
        self.eval_weighting = eval_weighting
        xp = backend.get_xp()
        self.buffers["population_log_norm"] = xp.zeros((1,), dtype=backend.default_dtype)
        self.buffers["population_batch_size"] = xp.zeros((1,), dtype=backend.default_dtype)
        self._n_train = 0  # host mirror of population_batch_size (None: to be read), see n_train
        self.last_weights = None
        self._warned_fallback = False

    eval_weighting = property(lambda self: self._eval_weighting,
                              lambda self, mode: setattr(self, "_eval_weighting", check_eval_weighting(mode)))

    def plan(self, n: int) -> Plan:
        """What weights the next forward pass of a batch of ``n`` uses, before any SAR exists (so
        that BA2M can skip its branches): ``Plan(mode, n_train, constant)`` with ``mode`` "train" or
        the eval weighting in effect, ``n_train`` the training batch size of the population
        statistics (read from the device in eval mode; 0 in training or before any) and
        ``constant`` the weight of every sample when it does not depend on the SARs, else None.
        "population" without training statistics (never trained, or a checkpoint from before the
        population mode) is "batch", with a warning, once; for the per-sample sigmoid it is "batch"."""
        if self.training:
            mode, n_train = "train", 0
        else:
            n_train = self.n_train()
            mode = self.eval_weighting
            if mode == "population" and n_train == 0 and self.normalisation != "sigmoid" and not self._warned_fallback:
                warnings.warn(f"{self.label()}: eval_weighting 'population' has no training statistics (never "
                              f"trained, or loaded from a checkpoint written before the population mode); "
                              f"using 'batch' weighting instead", RuntimeWarning, stacklevel=3)
                self._warned_fallback = True
            if mode == "population" and (n_train == 0 or self.normalisation == "sigmoid"):
                mode = "batch"
        if mode == "uniform":                    # "softmax_sum": 1 / N_train (1 / N before training)
            constant = 1.0 / (n_train or n) if self.normalisation == "softmax_sum" else 1.0
        elif n == 1 and self.ignores_a_common_shift(mode):
            constant = 1.0                       # N softmax and softmax of a single value are both 1
        else:
            constant = None
        return Plan(mode, n_train, constant)

    def ignores_a_common_shift(self, mode: str) -> bool:
        """Whether the weights of ``mode`` stay the same when every SAR moves by the same amount
        (a softmax over the batch: "softmax" / "softmax_sum" in training or "batch" eval)."""
        return self.normalisation != "sigmoid" and mode in ("train", "batch")

    def forward(self, x, a, plan: Plan | None = None):
        self.cache = None
        plan = plan or self.plan(x.shape[0])
        if plan.mode == "population":
            forward, backward = population_weighting_forward, population_weighting_backward
            scale = 1.0 / plan.n_train if self.normalisation == "softmax_sum" else 1.0
            y, cache = forward(x, a, self.buffers["population_log_norm"], self.temperature, scale)
        else:
            forward, backward = NORMALISATIONS[self.normalisation]
            y, cache = forward(x, a, self.temperature)
        if plan.mode == "train" and self.normalisation != "sigmoid":
            self._track_population(a)
        self.last_weights = cache[1]
        return self.keep(y, (backward, cache))

    def n_train(self) -> int:
        """``population_batch_size`` as an int, from a host mirror kept by the training batches (a
        read from the device per eval pass would be a sync): read once after a ``load_state_dict``."""
        if self._n_train is None:
            self._n_train = int(round(float(backend.to_host(self.buffers["population_batch_size"])[0])))
        return self._n_train

    def state_loaded(self) -> None:
        """Called by ``Module.load_state_dict``: the buffer may hold a new value."""
        self._n_train = None

    def _track_population(self, a) -> None:
        """``m <- (1 - 0.1) m + 0.1 l_B`` (the first training batch sets m), no host read."""
        xp = backend.array_module(a)
        log_norm, size = self.buffers["population_log_norm"], self.buffers["population_batch_size"]
        batch = batch_log_mean_exp(a, self.temperature).astype(log_norm.dtype)
        self.buffers["population_log_norm"] = xp.where(
            size > 0, (1.0 - POPULATION_MOMENTUM) * log_norm + POPULATION_MOMENTUM * batch, batch).astype(log_norm.dtype)
        self.buffers["population_batch_size"] = xp.full((1,), a.shape[0], dtype=size.dtype)
        self._n_train = a.shape[0]

    def backward(self, dy):
        backward, cache = self.saved(dy)
        return backward(dy, cache)

    def extra_repr(self):
        return f"normalisation={self.normalisation!r}, temperature={self.temperature}"
