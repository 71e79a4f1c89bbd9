"""2-D convolution (really cross-correlation, as in every framework), NCHW, with stride, zero
padding, dilation and an optional bias.

Shapes: x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H_out, W_out) with
    H_out = (H + 2*ph - dh*(KH-1) - 1) // sh + 1        (the same along W)
and, with xp the zero-padded input,
    out[n, f, i, j] = b[f] + sum_{c, a, e} w[f, c, a, e] * xp[n, c, i*sh + a*dh, j*sw + e*dw].

Fast path (what networks use): im2col + one matrix product.
    cols[(c, a, e), (n, i, j)] = xp[n, c, i*sh + a*dh, j*sw + e*dw]      (K = C*KH*KW rows)
is a strided *view* of the padded input (``backend.as_strided``); one copy makes it a contiguous
(K, N*H_out*W_out) matrix and one matrix product gives  out = w.reshape(F, K) @ cols.
The pixel axis is the long, contiguous one, so the product is one big GEMM.
Backward, with D = dout as an (F, N*H_out*W_out) matrix:
    dw   = D @ cols.T                        (F, K)
    db   = sum of D over its columns         (F,)
    dcol = w.reshape(F, K).T @ D             (K, N*H_out*W_out)
    dx   = col2im(dcol): for each kernel offset (a, e), add dcol[(., a, e), .] into the strided
           slice of the padded input it was read from (KH*KW slice-adds), then crop the padding.
1x1 convs with stride 1 and no padding skip im2col: out[n] = w(F, C) @ x[n](C, H*W).

``conv2d_forward_naive`` / ``conv2d_backward_naive`` are the same maths as plain loops — a
readable reference for lessons and tests, far too slow for networks.
"""
from __future__ import annotations

from .. import backend
from .validation import pair, require_finite, require_float, require_ndim

OP = "conv2d"


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """``(size + 2*padding - dilation*(kernel-1) - 1) // stride + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def int_pair(op: str, name: str, value, minimum: int = 1) -> tuple[int, int]:
    """``validation.pair`` that also turns a non-int, non-pair value (e.g. 1.5) into a clear ValueError."""
    if not isinstance(value, (int, tuple, list)):
        raise ValueError(f"{op}: {name} must be an integer >= {minimum} or a pair of them, got {value!r}")
    return pair(op, name, value, minimum)


def check_conv_args(x, w, b, stride, padding, dilation, op=OP):
    """Validate the inputs of a conv; returns (stride, padding, dilation) as pairs."""
    require_ndim(op, "x", x, 4, "(N, C, H, W)")
    require_float(op, "x", x, check_finite=False)
    require_ndim(op, "w", w, 4, "(F, C, KH, KW)")
    require_float(op, "w", w, check_finite=False)
    s, p, d = int_pair(op, "stride", stride), int_pair(op, "padding", padding, 0), int_pair(op, "dilation", dilation)
    n, c, h, wd = x.shape
    f, cw, kh, kw = w.shape
    if c != cw:
        raise ValueError(f"{op}: channel mismatch: x has {c} channels (shape {tuple(x.shape)}) but w expects {cw} "
                         f"(w shape {tuple(w.shape)})")
    if b is not None:
        require_float(op, "b", b, check_finite=False)
        if tuple(b.shape) != (f,):
            raise ValueError(f"{op}: expected bias of shape ({f},), got {tuple(b.shape)}")
    require_finite(op, x=x, w=w, b=b)
    ekh, ekw = d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1
    if ekh > h + 2 * p[0] or ekw > wd + 2 * p[1]:
        raise ValueError(f"{op}: kernel {kh}x{kw} with dilation {d} spans {ekh}x{ekw}, larger than the padded input "
                         f"{h + 2 * p[0]}x{wd + 2 * p[1]} (x shape {tuple(x.shape)}, padding {p})")
    return s, p, d


def pad_input(x, p):
    """Zero-pad the two spatial axes of an (N, C, H, W) array by p = (ph, pw)."""
    if p == (0, 0):
        return x
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dtype=x.dtype)
    out[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    return out


def im2col_view(xpad, kh, kw, s, d, ho, wo):
    """Strided view (C, KH, KW, N, H_out, W_out) of the padded input: element (c, a, e, n, i, j)
    is xpad[n, c, i*sh + a*dh, j*sw + e*dw]. No data is copied."""
    sn, sc, sh, sw = xpad.strides
    n, c = xpad.shape[:2]
    return backend.as_strided(xpad, (c, kh, kw, n, ho, wo),
                              (sc, sh * d[0], sw * d[1], sn, sh * s[0], sw * s[1]))


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1):
    """Convolve x (N, C, H, W) with w (F, C, KH, KW) (+ b (F,)); returns (out (N, F, H_out, W_out), cache).

    ``stride``, ``padding`` (zeros) and ``dilation`` are ints or (along H, along W) pairs.
    """
    xp = backend.array_module(x, w)
    s, p, d = check_conv_args(x, w, b, stride, padding, dilation)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    ho, wo = conv_output_size(h, kh, s[0], p[0], d[0]), conv_output_size(wd, kw, s[1], p[1], d[1])
    if kh == 1 and kw == 1 and s == (1, 1) and p == (0, 0):
        # 1x1 fast path: a matmul over channels for every sample, no im2col.
        w2 = w.reshape(f, c)
        out = xp.matmul(w2, x.reshape(n, c, h * wd))  # (N, F, H*W)
        if b is not None:
            out += b.reshape(1, f, 1)
        return out.reshape(n, f, ho, wo), ("1x1", x, w, b is not None)
    xpad = pad_input(x, p)
    cols = xp.ascontiguousarray(im2col_view(xpad, kh, kw, s, d, ho, wo)).reshape(c * kh * kw, n * ho * wo)
    out = w.reshape(f, c * kh * kw) @ cols  # (F, N*H_out*W_out): one GEMM
    if b is not None:
        out += b.reshape(f, 1)
    out = xp.ascontiguousarray(out.reshape(f, n, ho, wo).transpose(1, 0, 2, 3))
    return out, ("im2col", cols, x.shape, w, b is not None, s, p, d)


def conv2d_backward(dout, cache):
    """Gradients of conv2d: returns (dx (N, C, H, W), dw (F, C, KH, KW), db (F,) or None)."""
    xp = backend.array_module(dout)
    if cache[0] == "1x1":
        _, x, w, has_bias = cache
        n, c, h, wd = x.shape
        f = w.shape[0]
        d3 = dout.reshape(n, f, h * wd)
        x3 = x.reshape(n, c, h * wd)
        dx = xp.matmul(w.reshape(f, c).T, d3).reshape(x.shape)
        dw = xp.matmul(d3, x3.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
        db = d3.sum(axis=(0, 2)) if has_bias else None
        return dx, dw, db
    _, cols, xshape, w, has_bias, s, p, d = cache
    n, c, h, wd = xshape
    f, _, kh, kw = w.shape
    ho, wo = dout.shape[2], dout.shape[3]
    dmat = xp.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(f, n * ho * wo)
    dw = (dmat @ cols.T).reshape(w.shape)
    db = dmat.sum(axis=1) if has_bias else None
    dcols = (w.reshape(f, c * kh * kw).T @ dmat).reshape(c, kh, kw, n, ho, wo)
    # col2im: each kernel offset (a, e) read a strided slice of the padded input; add it back.
    # The padded gradient is kept as (C, N, Hp, Wp) so every slice-add runs over contiguous rows.
    dxpad = xp.zeros((c, n, h + 2 * p[0], wd + 2 * p[1]), dtype=dcols.dtype)
    for a in range(kh):
        for e in range(kw):
            r0, c0 = a * d[0], e * d[1]
            dxpad[:, :, r0:r0 + s[0] * (ho - 1) + 1:s[0], c0:c0 + s[1] * (wo - 1) + 1:s[1]] += dcols[:, a, e]
    dx = xp.ascontiguousarray(dxpad[:, :, p[0]:p[0] + h, p[1]:p[1] + wd].transpose(1, 0, 2, 3))
    return dx, dw, db


def conv2d_input_backward(dout, w, x_shape, stride=1, padding=0, dilation=1):
    """Only dx of conv2d — the adjoint (transpose) of the linear map x -> conv2d(x, w)."""
    xp = backend.array_module(dout, w)
    x = xp.zeros(x_shape, dtype=dout.dtype)
    _, cache = conv2d_forward(x, w, None, stride, padding, dilation)
    return conv2d_backward(dout, cache)[0]


# --- naive reference ------------------------------------------------------------------------

def conv2d_forward_naive(x, w, b=None, stride=1, padding=0, dilation=1):
    """The definition as loops over output pixels (reference only). Same API as conv2d_forward."""
    xp = backend.array_module(x, w)
    s, p, d = check_conv_args(x, w, b, stride, padding, dilation, op="conv2d_naive")
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    ho, wo = conv_output_size(h, kh, s[0], p[0], d[0]), conv_output_size(wd, kw, s[1], p[1], d[1])
    xpad = pad_input(x, p)
    out = xp.zeros((n, f, ho, wo), dtype=(x[:1, :1, :1, :1] * w[:1, :1, :1, :1]).dtype)
    for i in range(ho):
        for j in range(wo):
            # the receptive field of output pixel (i, j): (N, C, KH, KW)
            patch = xpad[:, :, i * s[0]:i * s[0] + d[0] * (kh - 1) + 1:d[0], j * s[1]:j * s[1] + d[1] * (kw - 1) + 1:d[1]]
            out[:, :, i, j] = patch.reshape(n, -1) @ w.reshape(f, -1).T
    if b is not None:
        out += b.reshape(1, f, 1, 1)
    return out, (x, w, b is not None, s, p, d)


def conv2d_backward_naive(dout, cache):
    """Loop-based gradients of conv2d (reference only): returns (dx, dw, db or None)."""
    x, w, has_bias, s, p, d = cache
    xp = backend.array_module(dout)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    ho, wo = dout.shape[2:]
    xpad = pad_input(x, p)
    dxpad = xp.zeros(xpad.shape, dtype=dout.dtype)
    dw = xp.zeros(w.shape, dtype=dout.dtype)
    for i in range(ho):
        for j in range(wo):
            rows = slice(i * s[0], i * s[0] + d[0] * (kh - 1) + 1, d[0])
            colz = slice(j * s[1], j * s[1] + d[1] * (kw - 1) + 1, d[1])
            g = dout[:, :, i, j]  # (N, F)
            dw += (g.T @ xpad[:, :, rows, colz].reshape(n, -1)).reshape(w.shape)
            dxpad[:, :, rows, colz] += (g @ w.reshape(f, -1)).reshape(n, c, kh, kw)
    dx = dxpad[:, :, p[0]:p[0] + h, p[1]:p[1] + wd].copy()
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db
