"""BA²M (batch aware attention module) and the SE block, built from hand-derived op pairs.

Op pairs (``*_forward(...) -> (out, cache)``, ``*_backward(dout, cache) -> grads``):

- ``nonlocal_attention``        softmax(theta^T phi) g^T, batched over samples (global branch core)
- ``sar_fusion``                the branch maps -> mean of their max per sample, no (N, C, H, W) broadcast
- ``sar``                       the SAR of BA²M: a sigmoid on each map (default) or none, then the fusion
- ``batch_softmax_weighting``   w = N softmax(a / tau) over the batch, Y_i = w_i X_i
- ``softmax_sum_weighting``     w = softmax(a / tau) over the batch (sums to 1), Y_i = w_i X_i
- ``sigmoid_weighting``         w_i = 2 sigmoid(a_i / tau), per sample, Y_i = w_i X_i
- ``population_weighting``      w_i = scale exp(a_i / tau - m), m a running log-mean-exp (eval)

Modules: ``ChannelBranch``, ``LocalSpatialBranch``, ``GlobalSpatialBranch``, ``SAR`` and
``SampleWeighting`` (children of ``BA2M`` over the op pairs above), ``BA2M``, ``SEBlock``;
``BA2MOptions``: every option of a BA²M module in one object. The classical intra-sample
baselines: ``SEBlock``, ``CBAM`` and ``BAM`` (with its ``BAMSpatialBranch``).
"""
from .ba2m import BA2M
from .bam import BAM, BAMSpatialBranch
from .cbam import CBAM
from .options import BA2MOptions
from .branches import ChannelBranch, GlobalSpatialBranch, LocalSpatialBranch
from .nonlocal_attention import nonlocal_attention_backward, nonlocal_attention_forward
from .sar import SAR, sar_backward, sar_forward, sar_fusion_backward, sar_fusion_forward
from .se import SEBlock
from .weighting import (SampleWeighting, batch_softmax_weighting_backward, batch_softmax_weighting_forward,
                        population_weighting_backward, population_weighting_forward, sigmoid_weighting_backward,
                        sigmoid_weighting_forward, softmax_sum_weighting_backward, softmax_sum_weighting_forward)

__all__ = [
    "BA2M", "BA2MOptions", "SAR", "SampleWeighting", "SEBlock", "CBAM", "BAM", "BAMSpatialBranch",
    "ChannelBranch", "LocalSpatialBranch", "GlobalSpatialBranch",
    "nonlocal_attention_forward", "nonlocal_attention_backward",
    "sar_fusion_forward", "sar_fusion_backward", "sar_forward", "sar_backward",
    "batch_softmax_weighting_forward", "batch_softmax_weighting_backward",
    "softmax_sum_weighting_forward", "softmax_sum_weighting_backward",
    "sigmoid_weighting_forward", "sigmoid_weighting_backward",
    "population_weighting_forward", "population_weighting_backward",
]
