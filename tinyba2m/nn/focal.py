"""Focal-loss module: ``forward(logits, y) -> scalar``, ``backward() -> dlogits`` (the same
interface as :class:`~tinyba2m.nn.loss.SoftmaxCrossEntropy`)."""
from __future__ import annotations

from ..ops.focal_loss import _check_gamma, focal_loss_backward, focal_loss_forward
from .loss import Loss


class FocalLoss(Loss, ops=(focal_loss_forward, focal_loss_backward)):
    """Mean focal loss ``-(1 - p_t)**gamma * log p_t`` over the batch (gamma = 0: cross-entropy)."""

    def __init__(self, gamma: float = 2.0, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = _check_gamma(gamma)
        self.label_smoothing = float(label_smoothing)

    def op_args(self) -> tuple:
        return (self.gamma, self.label_smoothing)

    def __repr__(self):
        return f"FocalLoss(gamma={self.gamma}, label_smoothing={self.label_smoothing})"
