"""Squeeze-and-excitation block (Hu et al. 2018): the classical intra-sample channel attention,
the baseline BA²M is compared with.

    s = GAP(x)                 (N, C)      s[n, c] = mean_{y,x} x[n, c, y, x]
    u = FC_2(ReLU(FC_1(s)))    (N, C)      FC_1: C -> h, FC_2: h -> C, h = max(C // r, 4)
    g = sigmoid(u)             (N, C)
    y = x * g[:, :, None, None]

The hidden width uses the same rule as BA²M's channel branch, ``max(C // r, 4)`` (plain SE uses
C // r, which is a single unit for C = 16, r = 16), so both modules see the same bottleneck.

Backward (x reaches y directly and through the gate):

    dg = sum_{y,x} dy * x                  du = dg * g * (1 - g)
    ds = FC_1^T ReLU' FC_2^T du            dx = dy * g[:, :, None, None] + ds[:, :, None, None] / (H W)
"""
from __future__ import annotations

from ..nn import Linear
from ..nn.module import Module
from ..ops.activations import relu_backward, relu_forward, stable_sigmoid
from ..ops.validation import require_positive_int
from .branches import check_input, hidden_width


class SEBlock(Module):
    """(N, C, H, W) -> same shape: every channel of a sample scaled by a gate in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        require_positive_int("SEBlock", "channels", channels)
        require_positive_int("SEBlock", "reduction", reduction)
        self.channels, self.reduction = channels, reduction
        self.hidden = hidden_width(channels, reduction)
        self.fc1 = Linear(channels, self.hidden)
        self.fc2 = Linear(self.hidden, channels)

    def forward(self, x):
        self.cache = None
        check_input(f"SEBlock({self.channels})", x, self.channels, allow_empty=True)
        s = x.mean(axis=(2, 3))
        r, relu_mask = relu_forward(self.fc1.forward(s))
        g = stable_sigmoid(self.fc2.forward(r))
        return self.keep(x * g[:, :, None, None], (x, g, relu_mask))

    def backward(self, dy):
        x, g, relu_mask = self.saved(dy)
        dg = (dy * x).sum(axis=(2, 3))
        du = dg * g * (1 - g)
        ds = self.fc1.backward(relu_backward(self.fc2.backward(du), relu_mask))
        hw = x.shape[2] * x.shape[3]
        return dy * g[:, :, None, None] + (ds / hw)[:, :, None, None]

    def extra_repr(self):
        return f"{self.channels}, reduction={self.reduction}, hidden={self.hidden}"
