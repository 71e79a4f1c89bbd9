"""Gradient-check cases for the extra losses: focal loss (plain, label-smoothed, gamma < 1)."""
from __future__ import annotations

from ... import backend
from ...ops.focal_loss import focal_loss_backward, focal_loss_forward
from ..checker import check_op, merge_results
from ..registry import register
from .inputs import normal


@register("focal_loss")
def _focal_loss():
    y = backend.get_xp().asarray([0, 3, 1, 2, 4, 3])
    variants = [("gamma=2", 2.0, 0.0), ("gamma=0.5", 0.5, 0.0), ("gamma=2,smoothing=0.1", 2.0, 0.1), ("gamma=0", 0.0, 0.0)]
    return merge_results("focal_loss", [
        (label, check_op(lambda z, gamma=gamma, eps=eps: focal_loss_forward(z, y, gamma, eps), focal_loss_backward,
                         [normal((6, 5), 10 + i, scale=2.0)], names=["logits"]))
        for i, (label, gamma, eps) in enumerate(variants)])
