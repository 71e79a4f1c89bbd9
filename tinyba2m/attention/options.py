"""The options of a BA²M module in one place: :class:`BA2MOptions`.

The training config builds one object (``TrainConfig.ba2m_options()``, or ``build_model`` from
its keywords); ``build_model``, the models and ``make_attention`` hand that same object on
untouched to every BA²M module (an SE block takes its ``reduction``, the models its
``placement``). Its names are checked here, once; the widths (``reduction``,
``nonlocal_reduction``), ``dilation`` and ``subsample`` by the branches that use them.
"""
from __future__ import annotations

import dataclasses

from .sar import SAR_ACTIVATIONS
from .weighting import EVAL_WEIGHTINGS, NORMALISATIONS, check_eval_weighting

BRANCHES = ("channel", "local", "global")
# where a model puts its attention modules: only the last block of each stage (the default,
# docs/BA2M.md section 4), or every block
PLACEMENTS = ("last", "every")


@dataclasses.dataclass(frozen=True)
class BA2MOptions:
    """Every option of a BA²M module (see docs/BA2M.md section 6); ``branches`` is kept in the
    fixed tie order C, LS, GS whatever order it is given in."""

    reduction: int = 16
    dilation: int = 4
    nonlocal_reduction: int = 8
    subsample: int = 2
    branches: tuple = BRANCHES
    temperature: float = 1.0
    normalisation: str = "softmax"
    eval_weighting: str = "population"
    sar_activation: str = "sigmoid"
    placement: str = "last"

    def __post_init__(self):
        branches = (self.branches,) if isinstance(self.branches, str) else tuple(self.branches)
        unknown = [b for b in branches if b not in BRANCHES]
        if not branches or unknown or len(set(branches)) != len(branches):
            raise ValueError(f"BA2M: branches must be a non-empty subset of {BRANCHES} without repeats, got {branches!r}")
        t = self.temperature
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
            raise ValueError(f"BA2M: temperature must be a number > 0, got {t!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"BA2M: normalisation must be one of {tuple(NORMALISATIONS)}, got {self.normalisation!r}")
        if self.sar_activation not in SAR_ACTIVATIONS:
            raise ValueError(f"BA2M: sar_activation must be one of {SAR_ACTIVATIONS}, got {self.sar_activation!r}")
        check_eval_weighting(self.eval_weighting)
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown BA²M placement {self.placement!r}: expected one of {', '.join(PLACEMENTS)}")
        object.__setattr__(self, "branches", tuple(b for b in BRANCHES if b in branches))
        object.__setattr__(self, "temperature", float(t))
