"""CBAM, the convolutional block attention module (Woo et al. 2018): a classical intra-sample
baseline — channel attention, then spatial attention, each a sigmoid gate, applied in sequence.

With ``h = max(C // r, 4)`` (the bottleneck rule of SE and BA²M's branches, r = 16 by default)
and one MLP shared by both descriptors, ``MLP(s) = FC_2(ReLU(FC_1(s)))``, FC_1: C -> h, FC_2: h -> C:

    channel    s_a = GAP(x), s_m = GMP(x)                (N, C)   average- and max-pooled
               g_c = sigmoid(MLP(s_a) + MLP(s_m))        (N, C)
               x1  = x * g_c[:, :, None, None]
    spatial    p   = [mean_c x1, max_c x1]               (N, 2, H, W)   ``channel_pool``
               g_s = sigmoid(conv7x7_{2->1, padding 3}(p))   (N, 1, H, W)
               y   = x1 * g_s

The two descriptors go through the MLP as one stacked batch (2N, C), so one Linear pair (one
cache) serves both. No batch norm: a sample's gates depend on that sample alone, in training and
in evaluation (docs/ATTENTION_BASELINES.md).

Backward, from the output back (every path to x summed):

    dg_s = sum_c dy * x1          dz = dg_s g_s (1 - g_s)      dp = conv^T dz
    dx1  = dy * g_s + channel_pool^T(dp)
    dg_c = sum_{y,x} dx1 * x      du = dg_c g_c (1 - g_c)      [ds_a; ds_m] = MLP^T [du; du]
    dx   = dx1 * g_c + GAP^T(ds_a) + GMP^T(ds_m)
"""
from __future__ import annotations

from .. import backend
from ..nn import Conv2d, Linear
from ..ops.activations import relu_backward, relu_forward, stable_sigmoid
from ..ops.pooling import (channel_pool_backward, channel_pool_forward, global_avg_pool_backward,
                           global_avg_pool_forward, global_max_pool_backward, global_max_pool_forward)
from ..ops.validation import require_positive_int
from .branches import _AttentionModule, hidden_width


class CBAM(_AttentionModule):
    """(N, C, H, W) -> same shape: a channel gate, then a spatial gate, both in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        for name, value in (("channels", channels), ("reduction", reduction), ("spatial_kernel", spatial_kernel)):
            require_positive_int("CBAM", name, value)
        if spatial_kernel % 2 == 0:
            raise ValueError(f"CBAM: spatial_kernel must be odd (the map keeps its size), got {spatial_kernel}")
        self.channels, self.reduction, self.spatial_kernel = channels, reduction, spatial_kernel
        self.hidden = hidden_width(channels, reduction)
        self.fc1 = Linear(channels, self.hidden)
        self.fc2 = Linear(self.hidden, channels)
        self.spatial = Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def forward(self, x):
        self.start_forward(x)
        xp = backend.array_module(x)
        n = x.shape[0]
        s_a, avg_cache = global_avg_pool_forward(x)
        s_m, max_cache = global_max_pool_forward(x)
        r, relu_mask = relu_forward(self.fc1.forward(xp.concatenate([s_a, s_m])))
        u = self.fc2.forward(r)
        g_c = stable_sigmoid(u[:n] + u[n:])
        x1 = x * g_c[:, :, None, None]
        p, pool_cache = channel_pool_forward(x1)
        g_s = stable_sigmoid(self.spatial.forward(p))
        return self.keep(x1 * g_s, (x, x1, g_c, g_s, relu_mask, avg_cache, max_cache, pool_cache))

    def backward(self, dy):
        x, x1, g_c, g_s, relu_mask, avg_cache, max_cache, pool_cache = self.saved(dy)
        xp = backend.array_module(dy)
        n = x.shape[0]
        dg_s = (dy * x1).sum(axis=1, keepdims=True)
        dp = self.spatial.backward(dg_s * g_s * (1 - g_s))
        dx1 = dy * g_s + channel_pool_backward(dp, pool_cache)
        dg_c = (dx1 * x).sum(axis=(2, 3))
        du = dg_c * g_c * (1 - g_c)
        ds = self.fc1.backward(relu_backward(self.fc2.backward(xp.concatenate([du, du])), relu_mask))
        return (dx1 * g_c[:, :, None, None] + global_avg_pool_backward(ds[:n], avg_cache)
                + global_max_pool_backward(ds[n:], max_cache))

    def extra_repr(self):
        return f"{self.channels}, reduction={self.reduction}, hidden={self.hidden}, spatial_kernel={self.spatial_kernel}"
