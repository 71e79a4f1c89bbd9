"""The option-A shortcut module of the CIFAR ResNets over the zero-pad op pair
(:mod:`tinyba2m.ops.shortcut`, where the maths is): subsample, pad the new channels with zeros."""
from __future__ import annotations

from ..nn.module import OpModule
from ..ops.shortcut import zero_pad_shortcut_backward, zero_pad_shortcut_forward


class ZeroPadShortcut(OpModule, ops=(zero_pad_shortcut_forward, zero_pad_shortcut_backward)):
    """Option-A shortcut module: (N, in_channels, H, W) -> (N, out_channels, H/stride, W/stride)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def op_args(self) -> tuple:
        return self.out_channels, self.stride

    def check_input(self, x) -> None:
        if getattr(x, "ndim", None) == 4 and x.shape[1] != self.in_channels:
            raise ValueError(f"ZeroPadShortcut({self.in_channels}->{self.out_channels}): expected input with "
                             f"{self.in_channels} channels, got shape {tuple(x.shape)}")

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"
