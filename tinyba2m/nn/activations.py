"""Modules for the element-wise activations and softmax."""
from __future__ import annotations

from ..ops.activations import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward
from .module import OpModule


class ReLU(OpModule, ops=(relu_forward, relu_backward)):
    """``max(x, 0)`` element-wise; any shape."""


class Sigmoid(OpModule, ops=(sigmoid_forward, sigmoid_backward)):
    """``1 / (1 + exp(-x))`` element-wise; any shape."""


class Softmax(OpModule, ops=(softmax_forward, softmax_backward)):
    """Softmax along ``axis`` (default: the last)."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def op_args(self) -> tuple:
        return (self.axis,)

    def extra_repr(self):
        return f"axis={self.axis}"
