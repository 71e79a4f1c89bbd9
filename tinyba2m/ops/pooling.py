"""Pooling of (N, C, H, W) maps: max, average, global average and global max over the spatial axes;
mean and max over the channels (``channel_pool``).

With kernel (KH, KW), stride (sh, sw) (default: the kernel) and padding (ph, pw), output pixel
(i, j) pools the window  xpad[n, c, i*sh : i*sh + KH, j*sw : j*sw + KW]  of the padded input xpad;
H_out = (H + 2*ph - KH) // sh + 1 (the same along W). Padding is at most half the kernel (as in
PyTorch), so every window holds at least one real input value.

max:  out = max over the window; padding is -inf, so padded cells never win.
      backward: each dout[n, c, i, j] goes to the single input that won its window (the first
      one in row-major window order on ties); inputs that win several windows collect the sum.
avg:  out = sum over the window / (KH*KW) — zero padding COUNTS in the divisor (PyTorch's
      count_include_pad=True), so a border window with padding averages in zeros.
      backward: dout / (KH*KW) added to every cell of the window (padded cells dropped).
global average: out[n, c] = mean over H, W;  dx = dout[n, c] / (H*W) everywhere.
global max: out[n, c] = max over H, W; dx = dout[n, c] at the first maximum, 0 elsewhere.
channel pool (CBAM): out[n, 0] = mean over C, out[n, 1] = max over C (per pixel); the backward
      spreads dout[n, 0] / C over the channels and adds dout[n, 1] to the winning channel.

Both windowed pools loop over the KH*KW kernel offsets only; each step is a strided slice of
the whole batch.
"""
from __future__ import annotations

from .. import backend
from .conv import pad_input, window_slice
from .validation import pair, require_dout, require_float, require_ndim


def pool_window(op, kernel_size, stride=None, padding=0):
    """(kernel, stride, padding) of a windowed pool as checked pairs; the stride defaults to the
    kernel and the padding is at most half the kernel."""
    k = pair(op, "kernel_size", kernel_size)
    s = k if stride is None else pair(op, "stride", stride)
    p = pair(op, "padding", padding, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel {k} (so no window is all padding)")
    return k, s, p


def _check_pool(op, x, kernel_size, stride, padding):
    require_ndim(op, "x", x, 4, "(N, C, H, W)")
    require_float(op, "x", x)
    k, s, p = pool_window(op, kernel_size, stride, padding)
    h, w = x.shape[2:]
    if k[0] > h + 2 * p[0] or k[1] > w + 2 * p[1]:
        raise ValueError(f"{op}: kernel {k[0]}x{k[1]} is larger than the padded input {h + 2 * p[0]}x{w + 2 * p[1]} "
                         f"(x shape {tuple(x.shape)}, padding {p})")
    ho, wo = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    return k, s, p, ho, wo


def _scatter_windows(parts, xshape, k, s, p, ho, wo, dtype, xp):
    """Sum ``parts(a, e)`` (N, C, H_out, W_out) into the cells each kernel offset read; crop padding."""
    n, c, h, w = xshape
    dxpad = xp.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dtype=dtype)
    for a in range(k[0]):
        for e in range(k[1]):
            dxpad[window_slice(a, e, s, ho, wo)] += parts(a, e)
    if p == (0, 0):
        return dxpad
    return xp.ascontiguousarray(dxpad[:, :, p[0]:p[0] + h, p[1]:p[1] + w])


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max over each window of x (N, C, H, W); returns (out (N, C, H_out, W_out), cache).

    ``stride`` defaults to ``kernel_size``; padding is -inf (padded cells never win)."""
    xp = backend.array_module(x)
    k, s, p, ho, wo = _check_pool("max_pool2d", x, kernel_size, stride, padding)
    xpad = pad_input(x, p, value=-xp.inf)
    out = xpad[window_slice(0, 0, s, ho, wo)].copy()
    arg = xp.zeros(out.shape, dtype=xp.int32)  # winning kernel offset a*KW + e per output pixel
    for a in range(k[0]):
        for e in range(k[1]):
            if a == 0 and e == 0:
                continue
            v = xpad[window_slice(a, e, s, ho, wo)]
            better = v > out  # strict: the first maximum keeps the win on ties
            out = xp.where(better, v, out)
            arg = xp.where(better, a * k[1] + e, arg).astype(xp.int32, copy=False)
    return out, (arg, x.shape, k, s, p)


def max_pool2d_backward(dout, cache):
    """Returns dx (N, C, H, W): each upstream value on the input that won its window."""
    arg, xshape, k, s, p = cache
    require_dout("max_pool2d", dout, arg.shape)
    xp = backend.array_module(dout)
    ho, wo = dout.shape[2:]
    zero = xp.zeros((), dtype=dout.dtype)
    return _scatter_windows(lambda a, e: xp.where(arg == a * k[1] + e, dout, zero), xshape, k, s, p, ho, wo, dout.dtype, xp)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Mean over each window of x (N, C, H, W); returns (out (N, C, H_out, W_out), cache).

    ``stride`` defaults to ``kernel_size``. Zero padding is counted: every window sum is divided
    by the kernel area KH*KW, padded cells included."""
    xp = backend.array_module(x)
    k, s, p, ho, wo = _check_pool("avg_pool2d", x, kernel_size, stride, padding)
    xpad = pad_input(x, p)
    out = xp.zeros((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    for a in range(k[0]):
        for e in range(k[1]):
            out += xpad[window_slice(a, e, s, ho, wo)]
    out *= 1.0 / (k[0] * k[1])
    return out, (x.shape, out.shape, k, s, p)


def avg_pool2d_backward(dout, cache):
    """Returns dx (N, C, H, W): dout / (KH*KW) spread over every cell of its window."""
    xshape, out_shape, k, s, p = cache
    require_dout("avg_pool2d", dout, out_shape)
    xp = backend.array_module(dout)
    share = dout * (1.0 / (k[0] * k[1]))
    return _scatter_windows(lambda a, e: share, xshape, k, s, p, dout.shape[2], dout.shape[3], dout.dtype, xp)


def global_avg_pool_forward(x):
    """Mean over H and W: x (N, C, H, W) -> out (N, C). Returns (out, cache)."""
    require_ndim("global_avg_pool", "x", x, 4, "(N, C, H, W)")
    require_float("global_avg_pool", "x", x)
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool_backward(dout, cache):
    """Returns dx (N, C, H, W) = dout[n, c] / (H*W) at every pixel."""
    n, c, h, w = cache
    require_dout("global_avg_pool", dout, (n, c))
    xp = backend.array_module(dout)
    dx = xp.empty((n, c, h, w), dtype=dout.dtype)
    dx[...] = (dout * (1.0 / (h * w))).reshape(n, c, 1, 1)
    return dx


def global_max_pool_forward(x):
    """Max over H and W: x (N, C, H, W) -> out (N, C). Returns (out, cache).

    The cache keeps the flat index (over H*W) of the first maximum of each (n, c) map."""
    require_ndim("global_max_pool", "x", x, 4, "(N, C, H, W)")
    require_float("global_max_pool", "x", x)
    n, c, h, w = x.shape
    xp = backend.array_module(x)
    if n * c == 0 or h * w == 0:
        return xp.zeros((n, c), dtype=x.dtype), (xp.zeros((n, c), dtype=xp.int64), x.shape)
    arg = x.reshape(n, c, h * w).argmax(axis=2)
    out = xp.take_along_axis(x.reshape(n, c, h * w), arg[:, :, None], axis=2)[:, :, 0]
    return out, (arg, x.shape)


def global_max_pool_backward(dout, cache):
    """Returns dx (N, C, H, W): dout[n, c] at the position that won its map, zero elsewhere."""
    arg, (n, c, h, w) = cache
    require_dout("global_max_pool", dout, (n, c))
    xp = backend.array_module(dout)
    won = xp.arange(h * w)[None, None, :] == arg[:, :, None]                # (N, C, H*W) one-hot
    return (won * dout[:, :, None]).reshape(n, c, h, w)


def channel_pool_forward(x):
    """Mean and max over the channels: x (N, C, H, W) -> out (N, 2, H, W), out[:, 0] the mean
    and out[:, 1] the max over C at each pixel (CBAM's spatial descriptor). Returns (out, cache)."""
    require_ndim("channel_pool", "x", x, 4, "(N, C, H, W)")
    require_float("channel_pool", "x", x)
    n, c, h, w = x.shape
    xp = backend.array_module(x)
    if c == 0:
        raise ValueError(f"channel_pool: x needs at least one channel, got shape {tuple(x.shape)}")
    arg = x.argmax(axis=1)                                                  # (N, H, W)
    out = xp.empty((n, 2, h, w), dtype=x.dtype)
    out[:, 0] = x.mean(axis=1)
    out[:, 1] = xp.take_along_axis(x, arg[:, None], axis=1)[:, 0]
    return out, (arg, x.shape)


def channel_pool_backward(dout, cache):
    """Returns dx (N, C, H, W) = dout[:, 0] / C everywhere, plus dout[:, 1] on the channel that
    won each pixel's max."""
    arg, (n, c, h, w) = cache
    require_dout("channel_pool", dout, (n, 2, h, w))
    xp = backend.array_module(dout)
    won = xp.arange(c)[None, :, None, None] == arg[:, None]                 # (N, C, H, W) one-hot
    return won * dout[:, 1:2] + (dout[:, 0] * (1.0 / c))[:, None]
