"""The zero-pad shortcut op pair: the parameter-free "option A" shortcut of the CIFAR ResNets
(He et al., 2016, section 4.2).

When a block changes the shape (stride 2, more channels), the identity shortcut subsamples the
input spatially and pads the new channels with zeros, split evenly on both sides:

    forward:  y = zeros(N, C_out, ceil(H/s), ceil(W/s));  y[:, p:p+C_in] = x[:, :, ::s, ::s]
              with p = (C_out - C_in) // 2
    backward: dx = zeros_like(x);  dx[:, :, ::s, ::s] = dy[:, p:p+C_in]

It adds no parameters, which keeps ResNet-20 at the paper's ~0.27M (a 1x1-conv projection
would add weights that the attention comparison should not depend on).
"""
from __future__ import annotations

from .. import backend
from .validation import require_dout, require_float, require_ndim, require_positive_int


def zero_pad_shortcut_forward(x, out_channels: int, stride: int = 2):
    """x (N, C_in, H, W) -> (N, out_channels, ceil(H/stride), ceil(W/stride)); returns (y, cache)."""
    require_ndim("zero_pad_shortcut", "x", x, 4, "(N, C, H, W)")
    require_float("zero_pad_shortcut", "x", x, check_finite=False)
    require_positive_int("zero_pad_shortcut", "stride", stride)
    n, c, h, w = x.shape
    if out_channels < c:
        raise ValueError(f"zero_pad_shortcut: out_channels must be >= the input channels {c}, got {out_channels}")
    xp = backend.array_module(x)
    sub = x[:, :, ::stride, ::stride]
    pad = (out_channels - c) // 2
    y = xp.zeros((n, out_channels) + tuple(sub.shape[2:]), dtype=x.dtype)
    y[:, pad:pad + c] = sub
    return y, (tuple(x.shape), tuple(y.shape), stride, pad)


def zero_pad_shortcut_backward(dy, cache):
    """dy (N, C_out, H', W') -> dx (N, C_in, H, W)."""
    shape, out_shape, stride, pad = cache
    require_dout("zero_pad_shortcut", dy, out_shape)
    xp = backend.array_module(dy)
    dx = xp.zeros(shape, dtype=dy.dtype)
    dx[:, :, ::stride, ::stride] = dy[:, pad:pad + shape[1]]
    return dx
