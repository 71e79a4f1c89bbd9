"""Loss modules: ``forward(logits, y) -> scalar``, ``backward() -> dlogits``, each over one op pair."""
from __future__ import annotations

from ..ops.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward


class Loss:
    """A loss over the op pair ``op_forward(logits, y, *self.op_args()) -> (loss, cache)`` and
    ``op_backward(dloss, cache) -> dlogits``; subclasses set the two with ``staticmethod``."""

    op_forward = None
    op_backward = None

    def __init__(self):
        self.cache = None

    def op_args(self) -> tuple:
        return ()

    def forward(self, logits, y):
        self.cache = None
        loss, self.cache = self.op_forward(logits, y, *self.op_args())
        return loss

    __call__ = forward

    def backward(self, dloss=1.0):
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward called before forward")
        return self.op_backward(dloss, self.cache)


class SoftmaxCrossEntropy(Loss):
    """Mean softmax cross-entropy over the batch, optional label smoothing."""

    op_forward = staticmethod(softmax_cross_entropy_forward)
    op_backward = staticmethod(softmax_cross_entropy_backward)

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def op_args(self) -> tuple:
        return (self.label_smoothing,)
