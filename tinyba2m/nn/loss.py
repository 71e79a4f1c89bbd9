"""Loss modules: ``forward(logits, y) -> scalar``, ``backward() -> dlogits``, each over one op pair."""
from __future__ import annotations

from ..ops.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .module import OpPair


class Loss(OpPair):
    """A loss over the op pair ``op_forward(logits, y, *self.op_args()) -> (loss, cache)`` and
    ``op_backward(dloss, cache) -> dlogits``."""

    def __init__(self):
        self.cache = None

    def forward(self, logits, y):
        self.cache = None
        loss, self.cache = self.op_forward(logits, y, *self.op_args())
        return loss

    __call__ = forward

    def backward(self, dloss=1.0):
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward called before forward")
        return self.op_backward(dloss, self.cache)


class SoftmaxCrossEntropy(Loss, ops=(softmax_cross_entropy_forward, softmax_cross_entropy_backward)):
    """Mean softmax cross-entropy over the batch, optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def op_args(self) -> tuple:
        return (self.label_smoothing,)
