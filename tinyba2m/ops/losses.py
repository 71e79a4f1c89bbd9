"""Softmax cross-entropy loss, mean over the batch, with optional label smoothing.

With ``q`` the target distribution (one-hot, or ``(1 - eps) * onehot + eps / K`` when smoothed)
and ``log p = x - logsumexp(x)`` (stable for large logits):

    loss = -(1/N) * sum_n sum_k q[n, k] * log p[n, k]        dx = (p - q) / N
"""
from __future__ import annotations

from .. import backend
from .validation import require_batch, require_dout, require_float, require_ndim


def log_softmax(x):
    """``x - logsumexp(x)`` along the last axis, stable for large logits."""
    xp = backend.array_module(x)
    z = x - x.max(axis=1, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))


def batch_size(logits):
    """N as a scalar of the logits' dtype, the divisor of a batch mean. A Python ``int`` would do
    under NumPy 2's promotion rules, but under NumPy 1.x ``float32 scalar / int`` is float64: the
    loss would silently be float64, and so the gradient seeded with it (twice the memory)."""
    return backend.dtype_of(logits).type(logits.shape[0])


def check_logits_and_labels(op: str, logits, y):
    """``logits`` must be a float (N, K) array with N >= 1, ``y`` integer class indices of shape
    (N,) within [0, K)."""
    require_ndim(op, "logits", logits, 2, "(N, K)")
    require_float(op, "logits", logits)
    n, k = logits.shape
    if getattr(y, "ndim", None) != 1 or y.shape[0] != n:
        raise ValueError(f"{op}: expected labels of shape ({n},), got {tuple(getattr(y, 'shape', ()))}")
    if getattr(y, "dtype", None) is None or backend.dtype_of(y).kind not in "iu":
        raise ValueError(f"{op}: labels must be an integer array, got dtype {getattr(y, 'dtype', None)}")
    if n and bool(((y < 0) | (y >= k)).any()):  # one device-to-host read; the range only for the message
        raise ValueError(f"{op}: labels must lie in [0, {k}), got range [{int(y.min())}, {int(y.max())}]")
    require_batch(op, logits)


def target_distribution(logits, y, label_smoothing=0.0):
    """``(1 - eps) * onehot(y) + eps / K``, shape (N, K), dtype of the logits."""
    xp = backend.array_module(logits)
    n, k = logits.shape
    q = xp.full((n, k), label_smoothing / k, dtype=logits.dtype)
    q[xp.arange(n), y] += 1.0 - label_smoothing
    return q


def softmax_cross_entropy_forward(logits, y, label_smoothing=0.0):
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits (N, K) float, y (N,) int in [0, K). Returns (loss scalar array, cache).
    """
    check_logits_and_labels("softmax_cross_entropy", logits, y)
    if not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"softmax_cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
    logp = log_softmax(logits)
    q = target_distribution(logits, y, float(label_smoothing))
    loss = -(q * logp).sum() / batch_size(logits)
    return loss, (logp, q)


def softmax_cross_entropy_backward(dloss, cache):
    """Returns dlogits (N, K) = dloss * (p - q) / N."""
    xp = backend.array_module(cache[0])
    logp, q = cache
    require_dout("softmax_cross_entropy", dloss, ())
    return (xp.exp(logp) - q) * (dloss / batch_size(logp))
