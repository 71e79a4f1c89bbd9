"""Gradient-check cases for the basic ops: linear, flatten, activations, softmax, loss."""
from __future__ import annotations

from ... import backend
from ...nn import Flatten, Linear, ReLU, Sigmoid, Softmax
from ...ops.activations import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward
from ...ops.linear import flatten_backward, flatten_forward, linear_backward, linear_forward
from ...ops.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from ..checker import check_op, merge_results
from ..registry import register, register_with
from . import module_case, op_case
from .inputs import away_from_zero, normal

register_with("linear", op_case, linear_forward, linear_backward,
              ("x", (4, 5), 1), ("w", (5, 3), 2), ("b", (3,), 3))
register_with("flatten", op_case, flatten_forward, flatten_backward, ("x", (2, 3, 2, 2), 1))
register_with("sigmoid", op_case, sigmoid_forward, sigmoid_backward, ("x", (3, 4), 1))

register_with("linear_module", module_case, lambda: Linear(5, 3), (4, 5))
register_with("flatten_module", module_case, Flatten, (2, 3, 2, 2))
register_with("relu_module", module_case, ReLU, (3, 4, 5), make_input=away_from_zero)
register_with("sigmoid_module", module_case, Sigmoid, (3, 4))
register_with("softmax_module", module_case, lambda: Softmax(axis=1), (3, 4, 2))


@register("relu")
def _relu():
    x = away_from_zero(backend.new_host_rng(4), (3, 4, 5))
    return check_op(relu_forward, relu_backward, [x], names=["x"], name="relu")


@register("softmax")
def _softmax():
    return merge_results("softmax", [(f"axis={axis}", check_op(softmax_forward, softmax_backward, [normal((3, 4, 5))],
                                                                names=["x"], kwargs={"axis": axis}))
                                     for axis in (1, -1)])


@register("softmax_cross_entropy")
def _softmax_cross_entropy():
    y = backend.get_xp().asarray([0, 3, 1, 2])
    return merge_results("softmax_cross_entropy", [
        (label, check_op(lambda z, eps=eps: softmax_cross_entropy_forward(z, y, eps),
                         softmax_cross_entropy_backward, [normal((4, 5), seed)], names=["logits"]))
        for label, eps, seed in (("", 0.0, 1), ("smoothing=0.1", 0.1, 7))])
