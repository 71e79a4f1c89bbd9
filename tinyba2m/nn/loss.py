"""Loss modules: ``forward(logits, y) -> scalar``, ``backward() -> dlogits``."""
from __future__ import annotations

from ..ops.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward


class SoftmaxCrossEntropy:
    """Mean softmax cross-entropy over the batch, optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = float(label_smoothing)
        self.cache = None

    def forward(self, logits, y):
        self.cache = None
        loss, self.cache = softmax_cross_entropy_forward(logits, y, self.label_smoothing)
        return loss

    __call__ = forward

    def backward(self, dloss=1.0):
        if self.cache is None:
            raise RuntimeError("SoftmaxCrossEntropy: backward called before forward")
        return softmax_cross_entropy_backward(dloss, self.cache)
