"""Pooling modules over :mod:`tinyba2m.ops.pooling` (no parameters)."""
from __future__ import annotations

from ..ops.pooling import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward, global_avg_pool_forward,
                           max_pool2d_backward, max_pool2d_forward, pool_window)
from .module import OpModule


class _Pool2d(OpModule):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool_window(type(self).__name__, kernel_size, stride, padding)

    def op_args(self) -> tuple:
        return self.kernel_size, self.stride, self.padding

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d, ops=(max_pool2d_forward, max_pool2d_backward)):
    """Max over each KH x KW window: (N, C, H, W) -> (N, C, H_out, W_out); stride defaults to the kernel."""


class AvgPool2d(_Pool2d, ops=(avg_pool2d_forward, avg_pool2d_backward)):
    """Mean over each KH x KW window (zero padding counted in the divisor KH*KW)."""


class GlobalAvgPool2d(OpModule, ops=(global_avg_pool_forward, global_avg_pool_backward)):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""
