"""Attention modules that the models plug in, and access to the BA²M modules of a model.

``make_attention(kind, channels, **ba2m_kwargs)`` gives ``None`` (``"none"``), an SE block
(``"se"``; only ``reduction`` of the keyword arguments applies) or a BA²M module (``"ba2m"``).
``ba2m_modules(model)`` lists the BA²M modules, ``set_eval_weighting(model, mode)`` switches all
of them between ``"population"``, ``"batch"`` and ``"uniform"`` evaluation, and ``sample_weights(model)`` returns
the per-sample weights of the last forward pass (mean over the BA²M modules of the model).
"""
from __future__ import annotations

from ..attention.ba2m import EVAL_WEIGHTINGS

ATTENTION_NAMES = ("none", "se", "ba2m")
PLACEMENTS = ("every", "last")  # attention in every block, or only in the last of each stage


def make_attention(kind: str, channels: int, **ba2m_kwargs):
    """The attention module for a feature map with ``channels`` channels, or None."""
    if kind == "none":
        if ba2m_kwargs:
            raise ValueError(f"attention 'none' takes no BA²M options, got {sorted(ba2m_kwargs)}")
        return None
    if kind == "se":
        extra = sorted(set(ba2m_kwargs) - {"reduction"})
        if extra:
            raise ValueError(f"attention 'se' takes only the reduction option, got {extra}")
        from ..attention import SEBlock
        return SEBlock(channels, **ba2m_kwargs)
    if kind == "ba2m":
        from ..attention import BA2M
        return BA2M(channels, **ba2m_kwargs)
    raise ValueError(f"unknown attention {kind!r}: expected one of {', '.join(ATTENTION_NAMES)}")


def ba2m_modules(model) -> list:
    """(qualified name, module) of every BA²M module inside ``model``, in forward order."""
    from ..attention import BA2M
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BA2M)]


def set_eval_weighting(model, mode: str) -> int:
    """Set ``eval_weighting`` of every BA²M module (one of ``EVAL_WEIGHTINGS``); returns how many."""
    if mode not in EVAL_WEIGHTINGS:
        raise ValueError(f"set_eval_weighting: mode must be one of {', '.join(EVAL_WEIGHTINGS)}, got {mode!r}")
    mods = ba2m_modules(model)
    for _, m in mods:
        m.eval_weighting = mode
    return len(mods)


def sample_weights(model):
    """(N,) mean over the model's BA²M modules of the per-sample weights ``w_i`` of the last
    forward pass (each module's weights have mean 1 over the batch), or None without BA²M."""
    mods = ba2m_modules(model)
    if not mods:
        return None
    total = None
    for _, m in mods:
        if getattr(m, "last_weights", None) is None:
            raise ValueError(f"sample_weights: module {type(m).__name__} has not run forward yet")
        total = m.last_weights if total is None else total + m.last_weights
    return total / len(mods)
