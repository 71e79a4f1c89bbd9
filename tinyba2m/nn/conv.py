"""The 2-D convolution module (NCHW) over :mod:`tinyba2m.ops.conv`."""
from __future__ import annotations

from ..ops.conv import conv2d_backward, conv2d_forward
from ..ops.validation import pair, require_batch, require_channels, require_positive_int
from .init import he_normal, zeros
from .module import OpModule


class Conv2d(OpModule, ops=(conv2d_forward, conv2d_backward)):
    """(N, in_channels, H, W) -> (N, out_channels, H_out, W_out).

    Params: ``w`` (out_channels, in_channels, KH, KW), He-normal with fan_in = in_channels*KH*KW;
    ``b`` (out_channels,), zeros (absent with ``bias=False``).
    H_out = (H + 2*padding - dilation*(KH-1) - 1) // stride + 1.
    """

    param_names = ("w", "b")

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, bias: bool = True):
        super().__init__()
        require_positive_int("Conv2d", "in_channels", in_channels)
        require_positive_int("Conv2d", "out_channels", out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair("Conv2d", "kernel_size", kernel_size)
        self.stride = pair("Conv2d", "stride", stride)
        self.padding = pair("Conv2d", "padding", padding, minimum=0)
        self.dilation = pair("Conv2d", "dilation", dilation)
        kh, kw = self.kernel_size
        self.params["w"] = he_normal((out_channels, in_channels, kh, kw), in_channels * kh * kw)
        if bias:
            self.params["b"] = zeros((out_channels,))

    def label(self) -> str:
        kh, kw = self.kernel_size
        k = str(kh) if kh == kw else f"{kh}x{kw}"
        return f"Conv2d({self.in_channels}->{self.out_channels}, k={k})"

    def op_args(self) -> tuple:
        return self.stride, self.padding, self.dilation

    def check_input(self, x) -> None:
        require_channels(self.label(), x, 4, "(N, C, H, W)", self.in_channels)
        require_batch(self.label(), x)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={'b' in self.params}")
