"""Attention modules that the models plug in, and access to the BA²M modules of a model.

``attention_options`` gives the one :class:`BA2MOptions` object a model hands to its attention
modules (a kind other than ``"ba2m"`` takes only the fields ``OPTION_FIELDS`` lists) and
``make_attention`` the module of a kind. The models put the kinds of ``PLACED`` in blocks as
``placement`` says, and BAM where the resolution changes (between stages), which ``placement``
does not move. ``ba2m_modules``, ``set_eval_weighting`` and ``sample_weights`` reach the BA²M
modules of a model.
"""
from __future__ import annotations

from ..attention import BA2M, BAM, CBAM, BA2MOptions, SEBlock
from ..attention.options import EVAL_WEIGHTINGS, PLACEMENTS

ATTENTION_NAMES = ("none", "se", "cbam", "bam", "ba2m")
# the kinds a model puts inside its blocks, where ``placement`` says (BAM goes between stages)
PLACED = ("se", "cbam", "ba2m")
# the BA2MOptions fields each kind other than "ba2m" reads
OPTION_FIELDS = {"none": ("placement",), "se": ("reduction", "placement"), "cbam": ("reduction", "placement"),
                 "bam": ("reduction", "dilation")}


def attention_options(kind: str, options: BA2MOptions | None = None, **values) -> BA2MOptions:
    """``options``, or a ``BA2MOptions(**values)`` for attention ``kind`` (not both)."""
    if options is not None and values:
        raise TypeError(f"give ba2m=BA2MOptions(...) or option keywords, not both (got {sorted(values)})")
    allowed = OPTION_FIELDS.get(kind)
    extra = sorted(set(values) - set(allowed)) if allowed is not None else []
    if kind == "none" and extra:
        raise ValueError(f"attention 'none' takes no BA²M options but the placement, got {extra}")
    if extra:
        raise ValueError(f"attention {kind!r} takes only the {' and '.join(allowed)} options, got {extra}")
    return options if options is not None else BA2MOptions(**values)


def make_attention(kind: str, channels: int, options: BA2MOptions | None = None):
    """The attention module for a feature map with ``channels`` channels, or None (``"none"``): an
    SE block or a CBAM with ``options.reduction``, a BAM with its ``reduction`` and ``dilation``, a
    BA²M module with ``options`` itself."""
    if kind == "none":
        return None
    if kind == "ba2m":
        return BA2M(channels, options)
    options = options or BA2MOptions()
    if kind == "se":
        return SEBlock(channels, options.reduction)
    if kind == "cbam":
        return CBAM(channels, options.reduction)
    if kind == "bam":
        return BAM(channels, options.reduction, options.dilation)
    raise ValueError(f"unknown attention {kind!r}: expected one of {', '.join(ATTENTION_NAMES)}")


def ba2m_modules(model) -> list:
    """(qualified name, module) of every BA²M module inside ``model``, in forward order."""
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
    for _, m in mods:
        if getattr(m, "last_weights", None) is None:
            raise ValueError(f"sample_weights: module {type(m).__name__} has not run forward yet")
    return sum(m.last_weights for _, m in mods) / len(mods)
