"""Focal loss (Lin et al., 2017), mean over the batch: the classical *loss-based* re-weighting
that BA²M's feature-based re-weighting is compared with.

With ``p = softmax(x)`` over the K classes of each row, a target distribution ``q`` (one-hot,
or ``(1 - eps) * onehot + eps / K`` with label smoothing) and focusing parameter ``gamma >= 0``:

    loss = -(1/N) * sum_n sum_k q[n, k] * (1 - p[n, k])**gamma * log p[n, k]

One-hot ``q`` gives the usual ``-(1 - p_t)**gamma * log p_t``; ``gamma = 0`` is cross-entropy.
Easy, confidently-right samples (``p_t`` near 1) are down-weighted by ``(1 - p_t)**gamma``.

Backward (hand-derived). With ``f(p) = (1 - p)**gamma * log p`` and
``dp_k/dx_j = p_k (delta_kj - p_j)``, let

    g[n, k] = q[n, k] * p[n, k] * f'(p[n, k])
            = q[n, k] * ( (1 - p)**gamma - gamma * (1 - p)**(gamma - 1) * p * log p )

then ``dloss/dx[n, j] = ( -g[n, j] + p[n, j] * sum_k g[n, k] ) / N``.

Numerical care: ``log p`` comes from a stable log-softmax; ``1 - p`` is ``-expm1(log p)`` (no
cancellation when ``p`` is near 1); the ``p * f'(p)`` form never divides by ``p``; the factor
``(1 - p)**(gamma - 1)`` uses ``1 - p`` clipped to the dtype's smallest normal number, where the
product with ``log p`` (which is ~ ``-(1 - p)``) is still exact in the limit.
"""
from __future__ import annotations

from .. import backend
from .losses import batch_size, check_logits_and_labels, log_softmax, nan_if_bad_labels, target_distribution
from .validation import require_dout


def _check_gamma(gamma) -> float:
    g = float(gamma)
    if not 0.0 <= g < float("inf"):  # (NaN fails both comparisons)
        raise ValueError(f"focal_loss: gamma must be a finite number >= 0, got {gamma!r}")
    return g


def focal_loss_forward(logits, y, gamma=2.0, label_smoothing=0.0):
    """Mean focal loss of softmax(logits) against integer labels.

    logits (N, K) float, y (N,) int in [0, K), gamma >= 0, label_smoothing in [0, 1).
    Returns (loss scalar array of the logits' dtype, cache).
    """
    check_logits_and_labels("focal_loss", logits, y)
    gamma = _check_gamma(gamma)
    q = target_distribution("focal_loss", logits, y, label_smoothing)
    xp = backend.array_module(logits)
    logp = log_softmax(logits)
    one_minus_p = -xp.expm1(logp)
    modulator = one_minus_p ** gamma if gamma != 0.0 else xp.ones_like(logp)
    loss = nan_if_bad_labels(-(q * modulator * logp).sum() / batch_size(logits), y, logits.shape[1])
    return loss, (logp, q, one_minus_p, modulator, gamma)


def focal_loss_backward(dloss, cache):
    """Returns dlogits (N, K) = dloss * (-g + p * sum_k g) / N (see the module docstring)."""
    logp, q, one_minus_p, modulator, gamma = cache
    require_dout("focal_loss", dloss, ())
    xp = backend.array_module(logp)
    p = xp.exp(logp)
    g = modulator
    if gamma != 0.0:
        tiny = backend.numpy_module.finfo(backend.dtype_of(logp)).tiny
        g = g - gamma * xp.maximum(one_minus_p, tiny) ** (gamma - 1.0) * p * logp
    g = q * g
    dx = -g + p * g.sum(axis=1, keepdims=True)
    return dx * (dloss / batch_size(logp))
