"""BAM, the bottleneck attention module (Park et al. 2018): a classical intra-sample baseline with
a channel and a dilated spatial branch, summed into one gate ``1 + sigmoid(.)`` that can only
amplify features. Models put it where the resolution changes (between the stages of a ResNet).

With ``h = max(C // r, 4)`` (r = 16) and dilation d (4):

    A_c = ChannelBranch(x)                                       (N, C)  GAP - FC - ReLU - FC - BN1d
    A_s = BN(conv1x1_{h->1}([ReLU(BN(conv3x3_{h->h, dilation d}))]^2 (ReLU(BN(conv1x1_{C->h}(x))))))
                                                                 (N, 1, H, W)
    g   = 1 + sigmoid(A_c[:, :, None, None] + A_s)               (N, C, H, W), in (1, 2)
    y   = x * g

The channel branch is BA²M's own :class:`~.branches.ChannelBranch` (the same layers); the spatial
branch is BA²M's local branch with the paper's two dilated 3x3 convs instead of one.

Backward (x reaches y directly and through both branches):

    dm   = dy * x * s (1 - s),  s = g - 1
    dA_c = sum_{y,x} dm         dA_s = sum_c dm
    dx   = dy * g + ChannelBranch^T(dA_c) + SpatialBranch^T(dA_s)

Both branches end in a batch norm, so training needs a batch of at least 2 samples.
"""
from __future__ import annotations

from ..ops.activations import stable_sigmoid
from ..ops.validation import require_positive_int
from .branches import _AttentionModule, ChannelBranch, LocalSpatialBranch


class BAMSpatialBranch(LocalSpatialBranch):
    """A_s (N, 1, H, W): BA²M's local branch with ``dilated`` (2) dilated 3x3 convs."""

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4, dilated: int = 2):
        super().__init__(channels, reduction, dilation, dilated)

    def extra_repr(self):
        return f"{super().extra_repr()}, dilated={self.dilated}"


class BAM(_AttentionModule):
    """(N, C, H, W) -> same shape: every value scaled by a gate in (1, 2)."""

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4):
        super().__init__()
        require_positive_int("BAM", "channels", channels)
        self.channels, self.reduction, self.dilation = channels, reduction, dilation
        self.channel_branch = ChannelBranch(channels, reduction)
        self.spatial_branch = BAMSpatialBranch(channels, reduction, dilation)

    def forward(self, x):
        self.start_forward(x)
        if self.training and x.shape[0] < 2:
            raise ValueError(f"{self.label()}: training needs a batch of at least 2 samples (its branches end in "
                             f"batch norms that estimate batch statistics), got input shape {tuple(x.shape)}")
        a_c = self.channel_branch.forward(x)
        a_s = self.spatial_branch.forward(x)
        s = stable_sigmoid(a_c[:, :, None, None] + a_s)
        return self.keep(x * (1 + s), (x, s))

    def backward(self, dy):
        x, s = self.saved(dy)
        dm = dy * x * s * (1 - s)
        return (dy * (1 + s) + self.channel_branch.backward(dm.sum(axis=(2, 3)))
                + self.spatial_branch.backward(dm.sum(axis=1, keepdims=True)))

    def zero_gradient_parameters(self) -> tuple:
        """The biases that a following batch norm cancels in training (see :mod:`.branches`)."""
        return tuple(f"{attr}.{p}" for attr in ("channel_branch", "spatial_branch")
                     for p in getattr(self, attr).zero_gradient_parameters())

    def extra_repr(self):
        return f"{self.channels}, reduction={self.reduction}, dilation={self.dilation}"
