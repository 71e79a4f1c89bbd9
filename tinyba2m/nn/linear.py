"""Modules for the fully connected layer and flatten."""
from __future__ import annotations

from ..ops.linear import flatten_backward, flatten_forward, linear_backward, linear_forward
from ..ops.validation import require_positive_int
from .init import he_normal, uniform_fan_in
from .module import OpModule


class Linear(OpModule, ops=(linear_forward, linear_backward)):
    """``out = x @ w + b``: (N, in_features) -> (N, out_features)."""

    param_names = ("w", "b")

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        require_positive_int("Linear", "in_features", in_features)
        require_positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.params["w"] = he_normal((in_features, out_features), in_features)
        if bias:
            self.params["b"] = uniform_fan_in((out_features,), in_features)

    def check_input(self, x) -> None:
        if getattr(x, "ndim", None) == 2 and x.shape[1] != self.in_features:
            raise ValueError(f"{self.label()}: expected input (N, {self.in_features}), got {tuple(x.shape)}")

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={'b' in self.params}"

    def label(self) -> str:
        return f"Linear({self.in_features}->{self.out_features})"


class Flatten(OpModule, ops=(flatten_forward, flatten_backward)):
    """(N, ...) -> (N, prod(...))."""
