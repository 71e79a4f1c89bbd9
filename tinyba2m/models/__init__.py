"""Models for CIFAR-sized images, each with an attention option ``"none" | "se" | "ba2m"``.

``build_model(name, attention, num_classes=100, ba2m_placement="every", ba2m=None, **changes)``
builds ``"smallcnn"`` or a CIFAR ResNet (``"resnet20"``, ``"resnet32"``, ``"resnet56"``). One
:class:`~tinyba2m.attention.BA2MOptions` object (``ba2m``, with the keyword ``changes`` such as
``temperature=2.0``) goes to every BA²M module; an SE block takes only its ``reduction``. Weights are drawn from the backend's seeded host generator, so
``backend.seed(s)`` before ``build_model`` fixes them.
"""
from __future__ import annotations

from ..ops.shortcut import zero_pad_shortcut_backward, zero_pad_shortcut_forward
from .init_schemes import INIT_SCHEMES, apply_init
from .attention_slots import (ATTENTION_NAMES, EVAL_WEIGHTINGS, PLACEMENTS, attention_options, ba2m_modules, make_attention,
                              sample_weights, set_eval_weighting)
from .resnet import RESNET_DEPTHS, BasicBlock, CifarResNet
from .shortcut import ZeroPadShortcut
from .smallcnn import SmallCNN

MODEL_NAMES = ("smallcnn",) + tuple(RESNET_DEPTHS)


def build_model(name: str, attention: str = "none", num_classes: int = 100, ba2m_placement: str = "every",
                zero_init_residual: bool = False, init: str = "he", ba2m=None, **changes):
    """A model by name (one of ``MODEL_NAMES``) with the given attention and placement, its conv
    and linear layers initialised with ``init`` (one of ``INIT_SCHEMES``, see :mod:`.init_schemes`).

    ``zero_init_residual`` (ResNets only; SmallCNN has no residual branch and ignores it): start the
    last BN scale of every residual branch at 0, see :class:`CifarResNet`."""
    for kind, value, known in (("model", name, MODEL_NAMES), ("attention", attention, ATTENTION_NAMES),
                               ("BA²M placement", ba2m_placement, PLACEMENTS), ("init scheme", init, INIT_SCHEMES)):
        if value not in known:
            raise ValueError(f"unknown {kind} {value!r}: expected one of {', '.join(known)}")
    options = attention_options(attention, ba2m, **changes)
    if name == "smallcnn":
        model = SmallCNN(num_classes, attention, ba2m_placement, ba2m=options)
    else:
        model = CifarResNet(RESNET_DEPTHS[name], num_classes, attention, ba2m_placement,
                            zero_init_residual=zero_init_residual, ba2m=options)
    return apply_init(model, init)


__all__ = ["build_model", "MODEL_NAMES", "INIT_SCHEMES", "apply_init", "ATTENTION_NAMES", "EVAL_WEIGHTINGS", "PLACEMENTS", "SmallCNN", "CifarResNet",
           "BasicBlock", "ZeroPadShortcut", "zero_pad_shortcut_forward", "zero_pad_shortcut_backward", "make_attention",
           "attention_options",
           "ba2m_modules", "set_eval_weighting", "sample_weights"]
