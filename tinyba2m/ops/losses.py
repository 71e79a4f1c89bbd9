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
    (N,) within [0, K). The range is checked here for host labels only: on a device it would be a
    read per call (a sync per training step); there an out-of-range label makes the loss NaN
    instead (:func:`nan_if_bad_labels`), which the training loop's periodic read reports."""
    require_ndim(op, "logits", logits, 2, "(N, K)")
    require_float(op, "logits", logits)
    n, k = logits.shape
    if getattr(y, "ndim", None) != 1 or y.shape[0] != n:
        raise ValueError(f"{op}: expected labels of shape ({n},), got {tuple(getattr(y, 'shape', ()))}")
    if getattr(y, "dtype", None) is None or backend.dtype_of(y).kind not in "iu":
        raise ValueError(f"{op}: labels must be an integer array, got dtype {getattr(y, 'dtype', None)}")
    if n and not backend.is_device_array(y) and bool(((y < 0) | (y >= k)).any()):
        raise ValueError(f"{op}: labels must lie in [0, {k}), got range [{int(y.min())}, {int(y.max())}]")
    require_batch(op, logits)


def nan_if_bad_labels(loss, y, k: int):
    """``loss``, or NaN where a device label lies outside [0, K) (checked without a read)."""
    if not backend.is_device_array(y):
        return loss
    xp = backend.array_module(loss)
    return xp.where(((y < 0) | (y >= k)).any(), xp.asarray(float("nan"), dtype=loss.dtype), loss)


def target_distribution(op: str, logits, y, label_smoothing=0.0):
    """``(1 - eps) * onehot(y) + eps / K``, shape (N, K), dtype of the logits, after checking that
    eps is in [0, 1) (device labels are clipped into [0, K): a bad one has made the loss NaN, see
    :func:`nan_if_bad_labels`)."""
    eps = float(label_smoothing)
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1), got {label_smoothing}")
    xp = backend.array_module(logits)
    n, k = logits.shape
    if backend.is_device_array(y):
        y = xp.clip(y, 0, k - 1)
    q = xp.full((n, k), eps / k, dtype=logits.dtype)
    q[xp.arange(n), y] += 1.0 - eps
    return q


def softmax_cross_entropy_forward(logits, y, label_smoothing=0.0):
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits (N, K) float, y (N,) int in [0, K). Returns (loss scalar array, cache).
    """
    check_logits_and_labels("softmax_cross_entropy", logits, y)
    q = target_distribution("softmax_cross_entropy", logits, y, label_smoothing)
    logp = log_softmax(logits)
    loss = nan_if_bad_labels(-(q * logp).sum() / batch_size(logits), y, logits.shape[1])
    return loss, (logp, q)


def softmax_cross_entropy_backward(dloss, cache):
    """Returns dlogits (N, K) = dloss * (p - q) / N."""
    xp = backend.array_module(cache[0])
    logp, q = cache
    require_dout("softmax_cross_entropy", dloss, ())
    return (xp.exp(logp) - q) * (dloss / batch_size(logp))
