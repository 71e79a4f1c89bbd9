"""Pooling modules over :mod:`tinyba2m.ops.pooling` (no parameters)."""
from __future__ import annotations

from ..ops.conv import int_pair
from ..ops.pooling import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward, global_avg_pool_forward,
                           max_pool2d_backward, max_pool2d_forward)
from .module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = int_pair(name, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else int_pair(name, "stride", stride)
        self.padding = int_pair(name, "padding", padding, 0)
        if self.padding[0] > self.kernel_size[0] // 2 or self.padding[1] > self.kernel_size[1] // 2:
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel {self.kernel_size}")
        self.cache = None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over each KH x KW window: (N, C, H, W) -> (N, C, H_out, W_out); stride defaults to the kernel."""

    def forward(self, x):
        out, self.cache = max_pool2d_forward(x, self.kernel_size, self.stride, self.padding)
        return out

    def backward(self, dout):
        return max_pool2d_backward(dout, self.cache)


class AvgPool2d(_Pool2d):
    """Mean over each KH x KW window (zero padding counted in the divisor KH*KW)."""

    def forward(self, x):
        out, self.cache = avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding)
        return out

    def backward(self, dout):
        return avg_pool2d_backward(dout, self.cache)


class GlobalAvgPool2d(Module):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        out, self.cache = global_avg_pool_forward(x)
        return out

    def backward(self, dout):
        return global_avg_pool_backward(dout, self.cache)
