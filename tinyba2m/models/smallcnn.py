"""A small plain CNN for quick CPU runs (30,196 parameters with 100 classes and no attention)::

    conv3x3(3 -> w0) - BN - ReLU - maxpool 2x2            32x32 -> 16x16
    conv3x3(w0 -> w1) - BN - ReLU - [ATT] - maxpool 2x2   16x16 -> 8x8
    conv3x3(w1 -> w2) - BN - ReLU - [ATT]                  8x8
    global average pool - Linear(w2 -> num_classes)

with widths ``(w0, w1, w2) = (16, 32, 64)``. ``ATT`` is nothing, SE, CBAM or BA²M, after the ReLU
of the second and third conv (the options' ``placement="every"``) or only the third (``"last"``, the
default). BAM goes where the resolution changes: before each max pool (after the first and the
second ReLU), whatever the placement. With no skip path the "end of the residual branch" of the spec has no counterpart;
because BA²M's weight is a positive per-sample scalar, scaling after the ReLU equals scaling
before it — only the features its branches see differ (post-activation, as for SE).
"""
from __future__ import annotations

from ..nn import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, MaxPool2d, ReLU
from ..nn.module import Sequential
from ..attention import BA2MOptions
from .attention_slots import PLACED, make_attention


class SmallCNN(Sequential):
    """(N, 3, H, W) -> logits (N, num_classes); H and W divisible by 4."""

    def __init__(self, num_classes: int = 100, attention: str = "none", widths=(16, 32, 64), in_channels: int = 3,
                 ba2m: BA2MOptions | None = None):
        placement = (ba2m or BA2MOptions()).placement
        w0, w1, w2 = widths
        placed = attention if attention in PLACED else "none"
        bam = attention == "bam"
        att1 = make_attention("bam", w0, ba2m) if bam else None
        att2 = make_attention("bam", w1, ba2m) if bam else make_attention(placed if placement == "every" else "none", w1, ba2m)
        att3 = make_attention(placed, w2, ba2m)
        layers = [Conv2d(in_channels, w0, 3, padding=1, bias=False), BatchNorm2d(w0), ReLU(), att1,
                  MaxPool2d(2), Conv2d(w0, w1, 3, padding=1, bias=False), BatchNorm2d(w1), ReLU(), att2,
                  MaxPool2d(2), Conv2d(w1, w2, 3, padding=1, bias=False), BatchNorm2d(w2), ReLU(), att3,
                  GlobalAvgPool2d(), Linear(w2, num_classes)]
        super().__init__(*(m for m in layers if m is not None))      # an attention that is "none" is absent
        self.num_classes, self.attention, self.placement, self.widths = num_classes, attention, placement, tuple(widths)

    def extra_repr(self):
        return f"widths={self.widths}, num_classes={self.num_classes}, attention={self.attention!r}, placement={self.placement!r}"
