"""Gradient-check cases for the extra losses: focal loss (plain, label-smoothed, gamma < 1)."""
from __future__ import annotations

from ... import backend
from ...ops.focal_loss import focal_loss_backward, focal_loss_forward
from ..checker import check_op
from ..registry import register


def _logits(shape, seed):
    return backend.get_xp().asarray(backend.new_host_rng(seed).standard_normal(shape) * 2.0)


@register("focal_loss")
def _focal_loss():
    y = backend.get_xp().asarray([0, 3, 1, 2, 4, 3])
    variants = [("logits(gamma=2)", 2.0, 0.0), ("logits(gamma=0.5)", 0.5, 0.0),
                ("logits(gamma=2,smoothing=0.1)", 2.0, 0.1), ("logits(gamma=0)", 0.0, 0.0)]
    result = None
    errors = {}
    for i, (label, gamma, eps) in enumerate(variants):
        r = check_op(lambda z, gamma=gamma, eps=eps: focal_loss_forward(z, y, gamma, eps), focal_loss_backward,
                     [_logits((6, 5), 10 + i)], names=["logits"], name="focal_loss")
        errors[label] = r.errors["logits"]
        result = result or r
    result.errors = errors
    return result
