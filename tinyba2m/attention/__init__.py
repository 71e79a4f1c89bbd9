"""BA²M (batch aware attention module) and the SE block, built from hand-derived op pairs.

- ``nonlocal_attention``  softmax(theta^T phi) g^T, batched over samples (the global branch core)
- ``sar``                 fusion of the branch maps into one scalar per sample (no broadcast built)
- ``weighting``           w = N softmax(a / tau) over the batch (or a per-sample sigmoid), Y_i = w_i X_i
"""
from .nonlocal_attention import nonlocal_attention_backward, nonlocal_attention_forward
from .sar import sar_fusion_backward, sar_fusion_forward
from .weighting import (batch_softmax_weighting_backward, batch_softmax_weighting_forward,
                        sigmoid_weighting_backward, sigmoid_weighting_forward)

__all__ = [
    "nonlocal_attention_forward", "nonlocal_attention_backward",
    "sar_fusion_forward", "sar_fusion_backward",
    "batch_softmax_weighting_forward", "batch_softmax_weighting_backward",
    "sigmoid_weighting_forward", "sigmoid_weighting_backward",
]
