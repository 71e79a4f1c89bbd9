"""Kernel-level figures: the matmul ceiling and each conv shape of a network.

FLOP counts: a (n x n) @ (n x n) product is 2 n^3; a conv forward is
2 * N * F * H_out * W_out * C * KH * KW, and its backward (dx and dw) twice that.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import backend
from ..nn.conv import Conv2d
from ..ops.conv import conv2d_backward, conv2d_forward, conv_output_size
from .timing import median_time


def matmul_call(n: int):
    """A callable computing an (n, n) @ (n, n) float32 product of fixed random operands on the
    active backend (2 n^3 FLOPs): the measure of the ceiling."""
    xp = backend.get_xp()
    rng = backend.new_host_rng(0)
    a, b = (backend.to_device(rng.standard_normal((n, n)), backend.float32) for _ in range(2))
    return lambda: xp.matmul(a, b)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an (n, n) @ (n, n) product on the active backend — the ceiling."""
    return 2.0 * n ** 3 / median_time(matmul_call(n), repeats=repeats) / 1e9


@dataclass(frozen=True)
class ConvShape:
    """One conv layer as seen in a forward pass: input (N, C, H, W), weight (F, C, KH, KW)."""
    x_shape: tuple
    w_shape: tuple
    stride: tuple
    padding: tuple
    dilation: tuple

    def out_hw(self):
        return tuple(conv_output_size(self.x_shape[2 + i], self.w_shape[2 + i], self.stride[i], self.padding[i],
                                      self.dilation[i]) for i in (0, 1))

    def forward_flops(self) -> float:
        n, c = self.x_shape[:2]
        f, _, kh, kw = self.w_shape
        ho, wo = self.out_hw()
        return 2.0 * n * f * ho * wo * c * kh * kw

    def label(self) -> str:
        _, c, h, w = self.x_shape
        f, _, kh, kw = self.w_shape
        extra = "" if self.stride == (1, 1) else f" s{self.stride[0]}"
        extra += "" if self.dilation == (1, 1) else f" d{self.dilation[0]}"
        return f"{c}->{f} {kh}x{kw}{extra} @{h}x{w}"


def conv_shapes_of(model, input_shape) -> list:
    """The distinct conv shapes met in one forward pass of ``model`` (in order of first use)."""
    shapes, patched = {}, []          # shapes: a dict, as an ordered set
    for _, mod in model.named_modules():
        if isinstance(mod, Conv2d):

            def recording(x, mod=mod, orig=mod.forward):
                shape = ConvShape(tuple(x.shape), tuple(mod.params["w"].shape), mod.stride, mod.padding, mod.dilation)
                shapes.setdefault(shape)
                return orig(x)

            patched.append(mod)
            mod.forward = recording
    try:
        x = backend.get_xp().zeros(input_shape, dtype=backend.float32)
        model.forward(x)
    finally:
        for mod in patched:
            del mod.forward  # back to the class method
    return list(shapes)


def conv_operands(shape: ConvShape):
    """(x, w, dout, keywords) of one conv shape: fixed random float32 input, weight and output
    gradient, and its stride, padding and dilation as keyword arguments of ``conv2d_forward``."""
    rng = backend.new_host_rng(1)
    x = backend.to_device(rng.standard_normal(shape.x_shape), backend.float32)
    w = backend.to_device(rng.standard_normal(shape.w_shape) * 0.1, backend.float32)
    dout = backend.to_device(rng.standard_normal(shape.x_shape[:1] + shape.w_shape[:1] + shape.out_hw()),
                             backend.float32)
    return x, w, dout, dict(stride=shape.stride, padding=shape.padding, dilation=shape.dilation)


def time_conv(shape: ConvShape, repeats: int = 3) -> dict:
    """Forward and backward seconds and GFLOP/s of one conv shape, float32."""
    x, w, dout, kw = conv_operands(shape)
    b = backend.get_xp().zeros(shape.w_shape[0], dtype=backend.float32)
    cache = conv2d_forward(x, w, b, **kw)[1]
    t_fwd = median_time(lambda: conv2d_forward(x, w, b, **kw), repeats=repeats)
    t_bwd = median_time(lambda: conv2d_backward(dout, cache), repeats=repeats)
    flops = shape.forward_flops()
    return {"shape": shape.label(), "forward_s": t_fwd, "backward_s": t_bwd,
            "forward_gflops": flops / t_fwd / 1e9, "backward_gflops": 2 * flops / t_bwd / 1e9,
            "total_gflops": 3 * flops / (t_fwd + t_bwd) / 1e9}
