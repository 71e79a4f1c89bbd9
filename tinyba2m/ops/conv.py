"""2-D convolution (really cross-correlation, as in every framework), NCHW, with stride, zero
padding, dilation and an optional bias.

Shapes: x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H_out, W_out) with
    H_out = (H + 2*ph - dh*(KH-1) - 1) // sh + 1        (the same along W)
and, with xpad the zero-padded input,
    out[n, f, i, j] = b[f] + sum_{c, a, e} w[f, c, a, e] * xpad[n, c, i*sh + a*dh, j*sw + e*dw].

Fast path (what networks use): im2col + one matrix product.
    cols[(c, a, e), (n, i, j)] = xpad[n, c, i*sh + a*dh, j*sw + e*dw]      (K = C*KH*KW rows)
is a strided *view* of the padded input (``backend.as_strided``); one copy makes it a contiguous
(K, N*H_out*W_out) matrix and one matrix product gives  out = w.reshape(F, K) @ cols.
Backward, with D = dout as an (F, N*H_out*W_out) matrix:
    dw   = D @ cols.T                        (F, K)
    db   = sum of D over its columns         (F,)
    dcol = w.reshape(F, K).T @ D             (K, N*H_out*W_out)
    dx   = col2im(dcol): for each kernel offset (a, e), add dcol[(., a, e), .] into the strided
           slice of the padded input it was read from (KH*KW slice-adds), then crop the padding.
1x1 convs with stride 1 and no padding skip im2col: out[n] = w(F, C) @ x[n](C, H*W).

Speed (CPU). The column matrix is KH*KW times the input, so copying it out to memory and
reading it back costs more than the product. Hence:
- the batch is cut into chunks whose columns take ~:func:`chunk_budget` (cache-sized); each chunk is
  im2col'd, multiplied and dropped while still in cache (on a GPU: one chunk, the whole batch);
- the cache keeps x, not the columns; the backward rebuilds each chunk's columns (a cheap copy);
- stride-1 convs use ``im2col_flat``: columns on the *padded-width* grid (H_out x Wp), where each
  (c, a, e) row is one contiguous run of the padded input, so the copy runs at memcpy speed; the
  Wp - W_out junk columns are cropped from the product (and zeroed in dout for the backward, so
  ``col2im_flat`` is KH*KW contiguous slice-adds);
- the chunks run side by side on a small thread pool (``hostpool.map_chunks``; NumPy releases
  the GIL in copies and products), each product on one BLAS thread;
- the stride-1 input gradient is itself a convolution (see :func:`conv2d_backward`).

``conv2d_forward_naive`` / ``conv2d_backward_naive`` are the same maths as plain loops — a
readable reference for lessons and tests, far too slow for networks.
"""
from __future__ import annotations

from .. import backend, hostpool
from .validation import pair, require_batch, require_dout, require_finite, require_float, require_ndim

OP = "conv2d"


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """``(size + 2*padding - dilation*(kernel-1) - 1) // stride + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def cached_output_shape(cache) -> tuple:
    """(N, F, H_out, W_out) of the forward pass that made ``cache`` (any of the three kinds)."""
    x, w, _, s, p, d = cache[-6:]
    return (x.shape[0], w.shape[0], conv_output_size(x.shape[2], w.shape[2], s[0], p[0], d[0]),
            conv_output_size(x.shape[3], w.shape[3], s[1], p[1], d[1]))


def check_conv_args(x, w, b, stride, padding, dilation, op=OP):
    """Validate the inputs of a conv; returns (stride, padding, dilation) as pairs, H_out and W_out."""
    require_ndim(op, "x", x, 4, "(N, C, H, W)")
    require_float(op, "x", x, check_finite=False)
    require_ndim(op, "w", w, 4, "(F, C, KH, KW)")
    require_float(op, "w", w, check_finite=False)
    s, p, d = pair(op, "stride", stride), pair(op, "padding", padding, 0), pair(op, "dilation", dilation)
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
    require_batch(op, x)
    ekh, ekw = d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1
    if ekh > h + 2 * p[0] or ekw > wd + 2 * p[1]:
        raise ValueError(f"{op}: kernel {kh}x{kw} with dilation {d} spans {ekh}x{ekw}, larger than the padded input "
                         f"{h + 2 * p[0]}x{wd + 2 * p[1]} (x shape {tuple(x.shape)}, padding {p})")
    return s, p, d, conv_output_size(h, kh, s[0], p[0], d[0]), conv_output_size(wd, kw, s[1], p[1], d[1])


def pad_input(x, p, extra_rows=0, value=0):
    """Pad the two spatial axes of an (N, C, H, W) array by p = (ph, pw) with ``value`` (zeros;
    max pooling pads with -inf), plus ``extra_rows`` more rows at the bottom (see :func:`im2col_flat`)."""
    if p == (0, 0) and not extra_rows:
        return x
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    shape = (n, c, h + 2 * p[0] + extra_rows, w + 2 * p[1])
    out = xp.full(shape, value, dtype=x.dtype) if value else xp.zeros(shape, dtype=x.dtype)  # (zeros: faster)
    out[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    return out


def window_slice(a, e, s, ho, wo):
    """Index of the cells of a padded (., ., Hp, Wp) array that kernel offset (a, e) reads for
    every output pixel (i, j) at stride s: rows a + i*sh, columns e + j*sw."""
    return (slice(None), slice(None), slice(a, a + s[0] * (ho - 1) + 1, s[0]), slice(e, e + s[1] * (wo - 1) + 1, s[1]))


def im2col(xpad, kh, kw, s, d, ho, wo):
    """The columns as a contiguous (C*KH*KW, N*H_out*W_out) matrix: one copy of the strided view
    (C, KH, KW, N, H_out, W_out) of the padded input whose element (c, a, e, n, i, j) is
    xpad[n, c, i*sh + a*dh, j*sw + e*dw]."""
    xp = backend.array_module(xpad)
    sn, sc, sh, sw = xpad.strides
    n, c = xpad.shape[:2]
    view = backend.as_strided(xpad, (c, kh, kw, n, ho, wo), (sc, sh * d[0], sw * d[1], sn, sh * s[0], sw * s[1]))
    return xp.ascontiguousarray(view).reshape(c * kh * kw, n * ho * wo)


def im2col_flat(xpad, kh, kw, d, ho):
    """Stride-1 columns on the padded-width grid: a contiguous (C*KH*KW, N*H_out*Wp) matrix.

    xpad (N, C, Hp + 1, Wp) is padded with one extra zero row. Output pixel (i, j) is column
    q = i*Wp + j, and its tap (a, e) is xpad[n, c].flat[q + a*dh*Wp + e*dw], so for fixed
    (c, a, e, n) the columns are one contiguous run of H_out*Wp values and the copy runs at
    memcpy speed. Columns with j >= W_out are junk (they wrap into the next row) and are
    cropped from the product; the extra row keeps the last run inside the array."""
    xp = backend.array_module(xpad)
    sn, sc, sh, sw = xpad.strides
    n, c, _, wp = xpad.shape
    view = backend.as_strided(xpad, (c, kh, kw, n, ho * wp), (sc, sh * d[0], sw * d[1], sn, sw))
    return xp.ascontiguousarray(view).reshape(c * kh * kw, n * ho * wp)


CHUNK_BYTES = None  # the column budget of a chunk; None: chosen by chunk_budget(), a number overrides it


def chunk_budget() -> int:
    """Bytes of columns per batch chunk, by how the chunks' products run:
    - one thread in all (a single-threaded BLAS, no pool): 1 MiB, columns sized to stay in a
      core's L2 until the product reads them back;
    - side by side on the host pool, one BLAS thread each: 4 MiB, since each chunk also costs a
      fixed Python overhead that one-sample chunks of the wide layers cannot hide;
    - no pool but a threaded BLAS (threadpoolctl absent): 16 MiB, since every product then waits
      for all its threads, so small calls stall.
    (docs/PERFORMANCE.md, "How the CPU path works".)"""
    if CHUNK_BYTES is not None:
        return CHUNK_BYTES
    threads, blas = hostpool.host_threads(), hostpool.blas_threads()
    if threads < blas:
        return 16 * 2 ** 20
    return 4 * 2 ** 20 if threads > 1 else 2 ** 20


def batch_chunks(x, bytes_per_sample):
    """Slices of the batch of x handled per step (``hostpool.chunk_slices`` with the column budget
    of :func:`chunk_budget`): groups of samples whose columns are still in cache when the matrix
    product reads them (a whole-batch column matrix goes out to memory and back, and memory, not
    arithmetic, sets the speed); on a GPU, one step."""
    return hostpool.chunk_slices(x.shape[0], bytes_per_sample, chunk_budget(), like=x)


def conv_chunk(x, w2, kh, kw, s, p, d, ho, wo):
    """Convolve a chunk x (B, C, H, W) with w2 (F, C*KH*KW): im2col + one GEMM.
    Returns (B, F, H_out, W_out) as a view of the (F, B, ...) product. Stride 1 uses the
    padded-width columns of :func:`im2col_flat`, other strides :func:`im2col`."""
    b, f = x.shape[0], w2.shape[0]
    if s == (1, 1):
        xpad = pad_input(x, p, extra_rows=1)
        out = (w2 @ im2col_flat(xpad, kh, kw, d, ho)).reshape(f, b, ho, xpad.shape[3])[..., :wo]
    else:
        out = (w2 @ im2col(pad_input(x, p), kh, kw, s, d, ho, wo)).reshape(f, b, ho, wo)
    return out.transpose(1, 0, 2, 3)


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1):
    """Convolve x (N, C, H, W) with w (F, C, KH, KW) (+ b (F,)); returns (out (N, F, H_out, W_out), cache).

    ``stride``, ``padding`` (zeros) and ``dilation`` are ints or (along H, along W) pairs.
    """
    xp = backend.array_module(x, w)
    s, p, d, ho, wo = check_conv_args(x, w, b, stride, padding, dilation)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    if kh == 1 and kw == 1 and s == (1, 1) and p == (0, 0):
        # 1x1 fast path: a matmul over channels for every sample, no im2col.
        w2 = w.reshape(f, c)
        out = xp.matmul(w2, x.reshape(n, c, h * wd))  # (N, F, H*W)
        if b is not None:
            out += b.reshape(1, f, 1)
        return out.reshape(n, f, ho, wo), ("1x1", x, w, b is not None, s, p, d)
    w2 = w.reshape(f, c * kh * kw)
    out = xp.empty((n, f, ho, wo), dtype=xp.result_type(x.dtype, w.dtype))

    def one_chunk(sl):
        out[sl] = conv_chunk(x[sl], w2, kh, kw, s, p, d, ho, wo)

    hostpool.map_chunks(one_chunk, batch_chunks(x, x.itemsize * c * kh * kw * ho * (wd + 2 * p[1])), like=x)
    if b is not None:
        out += b.reshape(1, f, 1, 1)
    return out, ("im2col", x, w, b is not None, s, p, d)


def col2im(dcols, x_shape, s, p, d):
    """Adjoint of im2col: dcols (C, KH, KW, B, H_out, W_out) -> dx (C, B, H, W).

    Each kernel offset (a, e) read a strided slice of the padded input; add its block back
    (KH*KW slice-adds over contiguous rows), then crop the padding."""
    xp = backend.array_module(dcols)
    c, kh, kw, b, ho, wo = dcols.shape
    h, wd = x_shape[2], x_shape[3]
    dxpad = xp.zeros((c, b, h + 2 * p[0], wd + 2 * p[1]), dtype=dcols.dtype)
    for a in range(kh):
        for e in range(kw):
            dxpad[window_slice(a * d[0], e * d[1], s, ho, wo)] += dcols[:, a, e]
    return dxpad[:, :, p[0]:p[0] + h, p[1]:p[1] + wd]


def col2im_flat(dcols, x_shape, p, d):
    """Adjoint of :func:`im2col_flat`: dcols (C, KH, KW, B, H_out*Wp) -> dx (C, B, H, W).

    Tap (a, e) of column q read flat position q + a*dh*Wp + e*dw of its padded plane, so its
    gradient is one slice-add of contiguous runs into the flattened (C, B, (Hp+1)*Wp) gradient.
    The junk columns (j >= W_out) must hold zeros (the caller zeroes them in dout)."""
    xp = backend.array_module(dcols)
    c, kh, kw, b, run = dcols.shape
    h, wd = x_shape[2], x_shape[3]
    hp, wp = h + 2 * p[0], wd + 2 * p[1]
    dxpad = xp.zeros((c, b, (hp + 1) * wp), dtype=dcols.dtype)
    for a in range(kh):
        for e in range(kw):
            off = a * d[0] * wp + e * d[1]
            dxpad[:, :, off:off + run] += dcols[:, a, e]
    return dxpad.reshape(c, b, hp + 1, wp)[:, :, p[0]:p[0] + h, p[1]:p[1] + wd]


def flipped_kernel(w):
    """w (F, C, KH, KW) -> (C, F, KH, KW), rotated by 180 degrees: the kernel whose convolution
    of the padded dout is dx (see :func:`conv2d_backward`)."""
    return w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]


def conv2d_backward(dout, cache):
    """Gradients of conv2d: returns (dx (N, C, H, W), dw (F, C, KH, KW), db (F,) or None).

    Stride 1: dx is itself a stride-1 convolution, of dout zero-padded by q = d*(K-1) - p with
    the flipped kernel (each dx[u] collects dout[u + p - a*d] * w[a] over the taps a):
        dx = conv2d(dout, flipped_kernel(w), padding=q, dilation=d)
    so it reuses the forward's im2col + GEMM (one contiguous copy and one product) instead of a
    (C*KH*KW)-row product scattered back with KH*KW slice-adds (col2im, still used for other
    strides and when q < 0).
    """
    require_dout(OP, dout, cached_output_shape(cache))
    xp = backend.array_module(dout)
    kind, x, w, has_bias, s, p, d = cache
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    if kind == "1x1":
        d3 = dout.reshape(n, f, h * wd)
        x3 = x.reshape(n, c, h * wd)
        dx = xp.matmul(w.reshape(f, c).T, d3).reshape(x.shape)
        dw = xp.matmul(d3, x3.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
        db = d3.sum(axis=(0, 2)) if has_bias else None
        return dx, dw, db
    ho, wo = dout.shape[2], dout.shape[3]
    k = c * kh * kw
    dtype = xp.result_type(dout.dtype, w.dtype)
    q = (d[0] * (kh - 1) - p[0], d[1] * (kw - 1) - p[1])
    dx_by_conv = s == (1, 1) and min(q) >= 0 and f <= c  # (F*KH*KW-row copy instead of C*KH*KW rows)
    w_back = flipped_kernel(w).reshape(c, f * kh * kw) if dx_by_conv else w.reshape(f, k).T
    dx = xp.empty(x.shape, dtype=dtype)
    wp = wd + 2 * p[1]

    def one_chunk(sl):
        """Writes dx[sl]; returns this chunk's share of dw, as (K, F)."""
        xs, ds = x[sl], dout[sl]
        bsz = xs.shape[0]
        if s == (1, 1):
            dmat = xp.zeros((f, bsz, ho, wp), dtype=dtype)  # zero junk columns j >= W_out
            dmat[..., :wo] = ds.transpose(1, 0, 2, 3)
            cols = im2col_flat(pad_input(xs, p, 1), kh, kw, d, ho)
        else:
            dmat = xp.ascontiguousarray(ds.transpose(1, 0, 2, 3))
            cols = im2col(pad_input(xs, p), kh, kw, s, d, ho, wo)
        dmat = dmat.reshape(f, -1)
        if dx_by_conv:
            dx[sl] = conv_chunk(ds, w_back, kh, kw, (1, 1), q, d, h, wd)
        elif s == (1, 1):
            dx[sl] = col2im_flat((w_back @ dmat).reshape(c, kh, kw, bsz, -1), x.shape, p, d).transpose(1, 0, 2, 3)
        else:
            dcols = (w_back @ dmat).reshape(c, kh, kw, bsz, ho, wo)
            dx[sl] = col2im(dcols, x.shape, s, p, d).transpose(1, 0, 2, 3)
        return cols @ dmat.T  # (K, F): this orientation is the faster GEMM for skinny F

    # A chunk holds two column matrices: x's (for dw), and dout's (dx_by_conv) or dcols. On the pool
    # both count against the budget (with one matrix counted, 2-thread backwards ran 7-20 % slower);
    # on one thread the larger one does (counting both ran the step 3 % slower there).
    both = (k * ho * wp, f * kh * kw * h * (wd + d[1] * (kw - 1)) if dx_by_conv else k * ho * wp)
    per_sample = (sum(both) if hostpool.host_threads() > 1 else max(both)) * x.itemsize
    parts = hostpool.map_chunks(one_chunk, batch_chunks(x, per_sample), like=x)
    dwt = hostpool.total(parts)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dwt.T.reshape(w.shape), db


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
    s, p, d, ho, wo = check_conv_args(x, w, b, stride, padding, dilation, op="conv2d_naive")
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
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
    require_dout("conv2d_naive", dout, cached_output_shape(cache))
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
