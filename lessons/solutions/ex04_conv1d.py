"""Solution of exercise 4: 1-D convolution as a loop over the K kernel offsets.

Forward:  out[n, f, i] = sum_k sum_c w[f, c, k] x[n, c, i + k]     (one einsum per offset k)
Backward: dw[f, c, k]  = sum_{n, i} dout[n, f, i] x[n, c, i + k]
          dx[n, c, i + k] += sum_f w[f, c, k] dout[n, f, i]         (slices of different k overlap,
                                                                     so they are added one by one)
"""
from tinyba2m import backend


def conv1d_forward(x, w):
    xp = backend.array_module(x, w)
    n, c, length = x.shape
    f, cw, k = w.shape
    if c != cw or k > length:
        raise ValueError(f"conv1d: x {tuple(x.shape)} and w {tuple(w.shape)} do not fit")
    lo = length - k + 1
    out = xp.zeros((n, f, lo), dtype=x.dtype)
    for j in range(k):
        out += xp.einsum("fc,nci->nfi", w[:, :, j], x[:, :, j:j + lo])
    return out, (x, w)


def conv1d_backward(dout, cache):
    x, w = cache
    xp = backend.array_module(x, w)
    k = w.shape[2]
    lo = dout.shape[2]
    dx = xp.zeros_like(x)
    dw = xp.zeros_like(w)
    for j in range(k):
        dw[:, :, j] = xp.einsum("nfi,nci->fc", dout, x[:, :, j:j + lo])
        dx[:, :, j:j + lo] += xp.einsum("fc,nfi->nci", w[:, :, j], dout)
    return dx, dw
