"""Focal-loss module: ``forward(logits, y) -> scalar``, ``backward() -> dlogits`` (the same
interface as :class:`~tinyba2m.nn.loss.SoftmaxCrossEntropy`)."""
from __future__ import annotations

from ..ops.focal_loss import _check_gamma, focal_loss_backward, focal_loss_forward


class FocalLoss:
    """Mean focal loss ``-(1 - p_t)**gamma * log p_t`` over the batch (gamma = 0: cross-entropy)."""

    def __init__(self, gamma: float = 2.0, label_smoothing: float = 0.0):
        self.gamma = _check_gamma(gamma)
        self.label_smoothing = float(label_smoothing)
        self.cache = None

    def forward(self, logits, y):
        self.cache = None
        loss, self.cache = focal_loss_forward(logits, y, self.gamma, self.label_smoothing)
        return loss

    __call__ = forward

    def backward(self, dloss=1.0):
        if self.cache is None:
            raise RuntimeError("FocalLoss: backward called before forward")
        return focal_loss_backward(dloss, self.cache)

    def __repr__(self):
        return f"FocalLoss(gamma={self.gamma}, label_smoothing={self.label_smoothing})"
