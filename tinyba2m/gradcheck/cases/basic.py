"""Gradient-check cases for the basic ops: linear, flatten, activations, softmax, loss."""
from __future__ import annotations

from ... import backend
from ...nn import Flatten, Linear, ReLU, Sigmoid, Softmax
from ...ops.activations import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward
from ...ops.linear import flatten_backward, flatten_forward, linear_backward, linear_forward
from ...ops.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from ..checker import check_module, check_op, merge_results
from ..registry import register
from .inputs import away_from_zero, normal


@register("linear")
def _linear():
    return check_op(linear_forward, linear_backward, [normal((4, 5)), normal((5, 3), 2), normal((3,), 3)],
                    names=["x", "w", "b"], name="linear")


@register("linear_module")
def _linear_module():
    backend.seed(0)
    return check_module(Linear(5, 3), (4, 5), name="linear_module")


@register("flatten")
def _flatten():
    return check_op(flatten_forward, flatten_backward, [normal((2, 3, 2, 2))], names=["x"], name="flatten")


@register("flatten_module")
def _flatten_module():
    return check_module(Flatten(), (2, 3, 2, 2), name="flatten_module")


@register("relu")
def _relu():
    x = away_from_zero(backend.new_host_rng(4), (3, 4, 5))
    return check_op(relu_forward, relu_backward, [x], names=["x"], name="relu", h=1e-6)


@register("relu_module")
def _relu_module():
    return check_module(ReLU(), (3, 4, 5), name="relu_module", make_input=away_from_zero)


@register("sigmoid")
def _sigmoid():
    return check_op(sigmoid_forward, sigmoid_backward, [normal((3, 4))], names=["x"], name="sigmoid")


@register("sigmoid_module")
def _sigmoid_module():
    return check_module(Sigmoid(), (3, 4), name="sigmoid_module")


@register("softmax")
def _softmax():
    return merge_results("softmax", [(f"axis={axis}", check_op(softmax_forward, softmax_backward, [normal((3, 4, 5))],
                                                                names=["x"], kwargs={"axis": axis}))
                                     for axis in (1, -1)])


@register("softmax_module")
def _softmax_module():
    return check_module(Softmax(axis=1), (3, 4, 2), name="softmax_module")


@register("softmax_cross_entropy")
def _softmax_cross_entropy():
    xp = backend.get_xp()
    y = xp.asarray([0, 3, 1, 2])
    plain = check_op(lambda z: softmax_cross_entropy_forward(z, y), softmax_cross_entropy_backward,
                     [normal((4, 5))], names=["logits"])
    smooth = check_op(lambda z: softmax_cross_entropy_forward(z, y, 0.1), softmax_cross_entropy_backward,
                      [normal((4, 5), 7)], names=["logits"])
    return merge_results("softmax_cross_entropy", [("", plain), ("smoothing=0.1", smooth)])
