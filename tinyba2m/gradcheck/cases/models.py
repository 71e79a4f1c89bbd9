"""Gradient-check cases for the model parts: the option-A zero-pad shortcut and a basic block."""
from __future__ import annotations

from ... import backend
from ...models import BasicBlock
from ...ops.shortcut import zero_pad_shortcut_backward, zero_pad_shortcut_forward
from ..checker import check_module, check_op
from ..registry import register
from .inputs import normal


@register("zero_pad_shortcut")
def _zero_pad_shortcut():
    return check_op(lambda a: zero_pad_shortcut_forward(a, 7, 2), zero_pad_shortcut_backward, [normal((2, 3, 5, 4), 3)],
                    names=["x"], name="zero_pad_shortcut")


@register("basic_block_module")
def _basic_block():
    backend.seed(0)
    return check_module(BasicBlock(2, 4, stride=2), (3, 2, 6, 6), name="basic_block_module", max_full=256)
