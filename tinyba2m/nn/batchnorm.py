"""Batch-norm modules over :mod:`tinyba2m.ops.batchnorm`.

Params ``gamma`` (ones) and ``beta`` (zeros), buffers ``running_mean`` (zeros) and
``running_var`` (ones), all of shape (num_features,). Train mode normalises with the batch
statistics and updates the buffers; eval mode normalises with the buffers.
``BatchNormReLU2d`` is ``BatchNorm2d`` then ``ReLU`` as one fused op pair (same parameters and
buffers, so the same state dict), what a conv block runs.
"""
from __future__ import annotations

from ..ops.batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_relu_backward, batchnorm_relu_forward
from ..ops.validation import require_batch, require_channels, require_positive_int
from .init import ones, zeros
from .module import OpModule


class _BatchNorm(OpModule, ops=(batchnorm_forward, batchnorm_backward)):
    param_names = ("gamma", "beta")

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        name = type(self).__name__
        require_positive_int(name, "num_features", num_features)
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1], got {momentum}")
        if not float(eps) > 0.0:
            raise ValueError(f"{name}: eps must be > 0, got {eps}")
        self.num_features, self.momentum, self.eps = num_features, float(momentum), float(eps)
        self.params["gamma"] = ones((num_features,))
        self.params["beta"] = zeros((num_features,))
        self.buffers["running_mean"] = zeros((num_features,))
        self.buffers["running_var"] = ones((num_features,))

    def op_args(self) -> tuple:
        return self.buffers["running_mean"], self.buffers["running_var"], self.training, self.momentum, self.eps

    def check_input(self, x) -> None:
        require_channels(self.label(), x, self.ndim, self.layout, self.num_features)
        if self.training:
            require_batch(f"{self.label()} in training mode (batch statistics)", x)

    def forward(self, x):
        """The op pair's forward; in training mode the running statistics it returns replace the buffers."""
        out = super().forward(x)
        if self.training:
            self.buffers["running_mean"] = self.cache["running_mean"]
            self.buffers["running_var"] = self.cache["running_var"]
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}"

    def label(self) -> str:
        return f"{type(self).__name__}({self.num_features})"


class BatchNorm1d(_BatchNorm):
    """Batch norm of (N, C) features, statistics over the batch axis."""
    ndim = 2
    layout = "(N, C)"


class BatchNorm2d(_BatchNorm):
    """Batch norm of (N, C, H, W) maps, statistics per channel over N, H and W."""
    ndim = 4
    layout = "(N, C, H, W)"


class BatchNormReLU2d(BatchNorm2d, ops=(batchnorm_relu_forward, batchnorm_relu_backward)):
    """``max(BatchNorm2d(x), 0)`` in one op pair (fewer passes over memory than the two modules);
    the same parameters, buffers and state-dict entries as :class:`BatchNorm2d`."""
