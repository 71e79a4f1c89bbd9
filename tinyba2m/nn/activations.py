"""Modules for the element-wise activations and softmax."""
from __future__ import annotations

from ..ops.activations import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward
from .module import OpModule


class ReLU(OpModule):
    op_forward, op_backward = staticmethod(relu_forward), staticmethod(relu_backward)


class Sigmoid(OpModule):
    op_forward, op_backward = staticmethod(sigmoid_forward), staticmethod(sigmoid_backward)


class Softmax(OpModule):
    op_forward, op_backward = staticmethod(softmax_forward), staticmethod(softmax_backward)

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def op_args(self) -> tuple:
        return (self.axis,)

    def extra_repr(self):
        return f"axis={self.axis}"
