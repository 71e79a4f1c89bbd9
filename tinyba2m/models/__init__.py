"""Models for CIFAR-sized images, each with an attention option ``"none" | "se" | "cbam" | "bam" | "ba2m"``.

``build_model(name, attention, num_classes=100, ba2m=None, **options)`` builds ``"smallcnn"`` or a
CIFAR ResNet (``"resnet20"``, ``"resnet32"``, ``"resnet56"``). One
:class:`~tinyba2m.attention.BA2MOptions` object (``ba2m``, or one built from keywords such as
``temperature=2.0`` or ``placement="every"``) goes to every BA²M module and says where the
attention goes (``placement``, default ``"last"``: the last block of each stage); an SE block or a
CBAM takes its ``reduction`` and ``placement``, a BAM its ``reduction`` and ``dilation`` (BAM goes
where the resolution changes). Weights are drawn from the backend's seeded host generator,
so ``backend.seed(s)`` before ``build_model`` fixes them.
"""
from __future__ import annotations

from ..ops.shortcut import zero_pad_shortcut_backward, zero_pad_shortcut_forward
from .init_schemes import INIT_SCHEMES, apply_init
from .attention_slots import (ATTENTION_NAMES, EVAL_WEIGHTINGS, PLACED, PLACEMENTS, attention_options, ba2m_modules, make_attention,
                              sample_weights, set_eval_weighting)
from .resnet import RESNET_DEPTHS, BasicBlock, CifarResNet
from .shortcut import ZeroPadShortcut
from .smallcnn import SmallCNN

MODEL_NAMES = ("smallcnn",) + tuple(RESNET_DEPTHS)


def build_model(name: str, attention: str = "none", num_classes: int = 100, zero_init_residual: bool = False,
                init: str = "he", ba2m=None, **options):
    """A model by name (one of ``MODEL_NAMES``) with the given attention and BA²M options, its conv
    and linear layers initialised with ``init`` (one of ``INIT_SCHEMES``, see :mod:`.init_schemes`).

    ``zero_init_residual`` (ResNets only; SmallCNN has no residual branch and ignores it): start the
    last BN scale of every residual branch at 0, see :class:`CifarResNet`."""
    for kind, value, known in (("model", name, MODEL_NAMES), ("attention", attention, ATTENTION_NAMES),
                               ("init scheme", init, INIT_SCHEMES)):
        if value not in known:
            raise ValueError(f"unknown {kind} {value!r}: expected one of {', '.join(known)}")
    ba2m = attention_options(attention, ba2m, **options)
    if name == "smallcnn":
        model = SmallCNN(num_classes, attention, ba2m=ba2m)
    else:
        model = CifarResNet(RESNET_DEPTHS[name], num_classes, attention, zero_init_residual=zero_init_residual, ba2m=ba2m)
    return apply_init(model, init)


__all__ = ["build_model", "MODEL_NAMES", "INIT_SCHEMES", "apply_init", "ATTENTION_NAMES", "PLACED", "EVAL_WEIGHTINGS", "PLACEMENTS", "SmallCNN", "CifarResNet",
           "BasicBlock", "ZeroPadShortcut", "zero_pad_shortcut_forward", "zero_pad_shortcut_backward", "make_attention",
           "attention_options",
           "ba2m_modules", "set_eval_weighting", "sample_weights"]
