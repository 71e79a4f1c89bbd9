"""CIFAR ResNets of depth 6n + 2 (He et al., 2016): ResNet-20 (n = 3), -32 (n = 5), -56 (n = 9).

    conv3x3(3 -> 16) - BN - ReLU
    stage 1: n basic blocks, 16 channels, 32x32
    stage 2: n basic blocks, 32 channels, 16x16 (first block stride 2)
    stage 3: n basic blocks, 64 channels,  8x8  (first block stride 2)
    global average pool - Linear(64 -> num_classes)

Basic block with the attention module where docs/BA2M.md section 4 puts it — at the end of the
residual branch, after its last BN, before the skip addition:

    out = ReLU( shortcut(x) + ATT( BN(conv3x3( ReLU(BN(conv3x3(x))) )) ) )

``ATT`` is nothing, an SE block, CBAM or BA²M; the options' ``placement`` puts it only in the last
block of each stage (``"last"``, the default) or in every block (``"every"``), for SE and CBAM too,
so they compare like for like. BAM (Park et al. 2018) is not in a block: one module on the output
of stages 1 and 2, where the resolution changes (the paper's "bottlenecks"), whatever the placement.
Every BN that a ReLU follows (the stem, the first of each block) runs with it as one fused op pair,
``BatchNormReLU2d`` (the same parameters and state-dict entries as ``BatchNorm2d``).
Convolutions before a BN have no bias. The shortcut is the identity, or — when the block
changes shape — the parameter-free "option A" (subsample + zero-padded channels,
:mod:`tinyba2m.ops.shortcut`), as in the paper's CIFAR models: ResNet-20 has 0.27M parameters for 10 classes,
about 0.28M for 100.
"""
from __future__ import annotations

from ..nn import BatchNorm2d, BatchNormReLU2d, Conv2d, GlobalAvgPool2d, Linear, ReLU
from ..nn.init import zeros
from ..nn.module import Module
from ..attention import BA2MOptions
from .attention_slots import PLACED, make_attention
from .shortcut import ZeroPadShortcut

RESNET_DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet56": 56}


class BasicBlock(Module):
    """(N, in_channels, H, W) -> (N, out_channels, H/stride, W/stride)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, attention: str = "none",
                 ba2m: BA2MOptions | None = None):
        super().__init__()
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNormReLU2d(out_channels)  # BN then ReLU, one fused op pair
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        self.att = make_attention(attention, out_channels, ba2m)
        self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride) if (stride != 1 or in_channels != out_channels) else None
        self.relu_out = ReLU()

    def forward(self, x):
        self.cache = None
        r = self.bn2.forward(self.conv2.forward(self.bn1.forward(self.conv1.forward(x))))
        if self.att is not None:
            r = self.att.forward(r)
        s = x if self.shortcut is None else self.shortcut.forward(x)
        return self.keep(self.relu_out.forward(r + s))

    def backward(self, dout):
        self.saved(dout)
        d = self.relu_out.backward(dout)
        dr = d if self.att is None else self.att.backward(d)
        dr = self.conv1.backward(self.bn1.backward(self.conv2.backward(self.bn2.backward(dr))))
        return dr + (d if self.shortcut is None else self.shortcut.backward(d))


class CifarResNet(Module):
    """(N, 3, H, W) -> logits (N, num_classes); depth = 6n + 2.

    ``zero_init_residual=True`` starts the scale ``gamma`` of the last BN of every residual branch
    at 0 (Goyal et al., 2017), so every block starts as the identity (plus ReLU) and the attention
    module first sees all-zero features, which gives every sample the weight 1.
    """

    def __init__(self, depth: int = 20, num_classes: int = 100, attention: str = "none", widths=(16, 32, 64),
                 zero_init_residual: bool = False, ba2m: BA2MOptions | None = None):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CifarResNet: depth must be 6n + 2 with n >= 1 (20, 32, 56, ...), got {depth}")
        placement = (ba2m or BA2MOptions()).placement
        n = (depth - 2) // 6
        self.depth, self.num_classes, self.attention, self.placement = depth, num_classes, attention, placement
        self.stem_conv = Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.stem_bn = BatchNormReLU2d(widths[0])  # BN then ReLU, one fused op pair
        self.blocks = []
        self.after_block = {}        # block index -> the BAM module applied to that block's output
        in_c = widths[0]
        for stage, out_c in enumerate(widths):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                att = attention if attention in PLACED and (placement == "every" or i == n - 1) else "none"
                block = BasicBlock(in_c, out_c, stride, att, ba2m)
                setattr(self, f"stage{stage + 1}_block{i + 1}", block)
                self.blocks.append(block)
                in_c = out_c
            if attention == "bam" and stage < len(widths) - 1:     # before the next stage halves the map
                setattr(self, f"bam{stage + 1}", make_attention("bam", out_c, ba2m))
                self.after_block[len(self.blocks) - 1] = getattr(self, f"bam{stage + 1}")
        self.pool = GlobalAvgPool2d()
        self.fc = Linear(in_c, num_classes)
        self.zero_init_residual = bool(zero_init_residual)
        if zero_init_residual:
            for block in self.blocks:
                block.bn2.params["gamma"] = zeros(block.bn2.params["gamma"].shape)

    def forward(self, x):
        self.cache = None
        x = self.stem_bn.forward(self.stem_conv.forward(x))
        for i, block in enumerate(self.blocks):
            x = block.forward(x)
            if i in self.after_block:
                x = self.after_block[i].forward(x)
        return self.keep(self.fc.forward(self.pool.forward(x)))

    def backward(self, dout):
        self.saved(dout)
        d = self.pool.backward(self.fc.backward(dout))
        for i in reversed(range(len(self.blocks))):
            if i in self.after_block:
                d = self.after_block[i].backward(d)
            d = self.blocks[i].backward(d)
        return self.stem_conv.backward(self.stem_bn.backward(d))

    def extra_repr(self):
        return (f"depth={self.depth}, num_classes={self.num_classes}, attention={self.attention!r}, "
                f"placement={self.placement!r}, zero_init_residual={self.zero_init_residual}")
