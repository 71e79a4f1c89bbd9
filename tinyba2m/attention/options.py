"""The options of a BA²M module in one place: :class:`BA2MOptions`.

One object travels from the training config (``TrainConfig.ba2m_options()``) through
``build_model`` and the models to every BA²M module (and an SE block takes its ``reduction``);
its names are checked here, once. The widths (``reduction``, ``nonlocal_reduction``), ``dilation``
and ``subsample`` are checked by the branches that use them.
"""
from __future__ import annotations

import dataclasses

from .sar import SAR_ACTIVATIONS
from .weighting import NORMALISATIONS

BRANCHES = ("channel", "local", "global")
EVAL_WEIGHTINGS = ("population", "batch", "uniform")


def check_eval_weighting(mode: str) -> str:
    if mode not in EVAL_WEIGHTINGS:
        raise ValueError(f"BA2M: eval_weighting must be one of {EVAL_WEIGHTINGS}, got {mode!r}")
    return mode


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
        object.__setattr__(self, "branches", tuple(b for b in BRANCHES if b in branches))
        object.__setattr__(self, "temperature", float(t))
