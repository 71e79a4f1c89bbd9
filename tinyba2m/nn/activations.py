"""Modules for the element-wise activations and softmax."""
from __future__ import annotations

from ..ops.activations import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward
from .module import Module


class ReLU(Module):
    def forward(self, x):
        out, self.cache = relu_forward(x)
        return out

    def backward(self, dout):
        return relu_backward(dout, self.cache)


class Sigmoid(Module):
    def forward(self, x):
        out, self.cache = sigmoid_forward(x)
        return out

    def backward(self, dout):
        return sigmoid_backward(dout, self.cache)


class Softmax(Module):
    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        out, self.cache = softmax_forward(x, self.axis)
        return out

    def backward(self, dout):
        return softmax_backward(dout, self.cache)

    def extra_repr(self):
        return f"axis={self.axis}"
