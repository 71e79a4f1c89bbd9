"""Modules for the fully connected layer and flatten."""
from __future__ import annotations

from ..ops.linear import flatten_backward, flatten_forward, linear_backward, linear_forward
from ..ops.validation import require_positive_int
from .init import he_normal, uniform_fan_in
from .module import Module, OpModule


class Linear(Module):
    """``out = x @ w + b``: (N, in_features) -> (N, out_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        require_positive_int("Linear", "in_features", in_features)
        require_positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.params["w"] = he_normal((in_features, out_features), in_features)
        if bias:
            self.params["b"] = uniform_fan_in((out_features,), in_features)
        self.cache = None

    def forward(self, x):
        self.cache = None
        if getattr(x, "ndim", None) == 2 and x.shape[1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}->{self.out_features}): expected input (N, {self.in_features}), got {tuple(x.shape)}")
        return self.keep(*linear_forward(x, self.params["w"], self.params.get("b")))

    def backward(self, dout):
        dx, dw, db = linear_backward(dout, self.saved(dout))
        self.accumulate_grad("w", dw)
        if db is not None:
            self.accumulate_grad("b", db)
        return dx

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={'b' in self.params}"

    def label(self) -> str:
        return f"Linear({self.in_features}->{self.out_features})"


class Flatten(OpModule):
    """(N, ...) -> (N, prod(...))."""

    op_forward, op_backward = staticmethod(flatten_forward), staticmethod(flatten_backward)
