"""Gradient-check cases for the model parts: the option-A zero-pad shortcut and a basic block."""
from __future__ import annotations

from ...models import BasicBlock
from ...ops.shortcut import zero_pad_shortcut_backward, zero_pad_shortcut_forward
from ..registry import register_with
from . import module_case, op_case

register_with("zero_pad_shortcut", op_case, lambda a: zero_pad_shortcut_forward(a, 7, 2), zero_pad_shortcut_backward,
              ("x", (2, 3, 5, 4), 3))
register_with("basic_block_module", module_case, lambda: BasicBlock(2, 4, stride=2), (3, 2, 6, 6), max_full=256)
