"""BA²M, the batch aware attention module: one scalar weight per sample, set by comparing the
samples of the batch.

    A_C, A_LS, A_GS = branches(X)                 (N, C), (N, 1, H, W), (N, 1, H, W)
    a_i = mean_{c,y,x} max(A_C[i,c], A_LS[i,y,x], A_GS[i,y,x])      SAR, (N,)
    w   = N * softmax(a / tau)                    ("softmax", default; mean(w) = 1)
        | 2 * sigmoid(a / tau)                    ("sigmoid": per sample, no coupling)
    Y_i = w_i * X_i

Backward sums every path to X: the direct one ``w_i dY_i`` and, through da -> SAR -> the
branches, the one through the weights (which mixes samples for "softmax", and through the batch
statistics of the branch BNs in training).

Modes. ``train()``: BN batch statistics, weights from the batch. ``eval()``: BN running
statistics, and ``eval_weighting`` picks ``"batch"`` (softmax over the evaluation batch) or
``"uniform"`` (w = 1: a prediction does not depend on its batch-mates). When the weights are 1
whatever the branches say — "uniform" eval, or a batch of one with "softmax" (N softmax of one
value is exactly 1) — the branches are skipped: Y = X, ``last_weights`` is ones and
``last_sar`` is NaN (not computed).
"""
from __future__ import annotations

from .. import backend
from ..nn.module import Module
from ..ops.validation import require_positive_int
from .branches import ChannelBranch, GlobalSpatialBranch, LocalSpatialBranch, check_input
from .sar import sar_fusion_backward, sar_fusion_forward
from .weighting import (batch_softmax_weighting_backward, batch_softmax_weighting_forward,
                        sigmoid_weighting_backward, sigmoid_weighting_forward)

BRANCHES = ("channel", "local", "global")
NORMALISATIONS = {"softmax": (batch_softmax_weighting_forward, batch_softmax_weighting_backward),
                  "sigmoid": (sigmoid_weighting_forward, sigmoid_weighting_backward)}
EVAL_WEIGHTINGS = ("batch", "uniform")


class BA2M(Module):
    """(N, C, H, W) -> same shape, ``Y_i = w_i X_i``. See the module docstring and docs/BA2M.md."""

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4, nonlocal_reduction: int = 8,
                 subsample: int = 2, branches=BRANCHES, temperature: float = 1.0,
                 normalisation: str = "softmax", eval_weighting: str = "batch"):
        super().__init__()
        require_positive_int("BA2M", "channels", channels)
        branches = (branches,) if isinstance(branches, str) else tuple(branches)
        unknown = [b for b in branches if b not in BRANCHES]
        if not branches or unknown or len(set(branches)) != len(branches):
            raise ValueError(f"BA2M: branches must be a non-empty subset of {BRANCHES} without repeats, got {branches!r}")
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            raise ValueError(f"BA2M: temperature must be a number > 0, got {temperature!r}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"BA2M: normalisation must be one of {tuple(NORMALISATIONS)}, got {normalisation!r}")
        self.channels, self.temperature, self.normalisation = channels, float(temperature), normalisation
        self.branches = tuple(b for b in BRANCHES if b in branches)       # the fixed tie order C, LS, GS
        self.eval_weighting = eval_weighting
        if "channel" in self.branches:
            self.channel_branch = ChannelBranch(channels, reduction)
        if "local" in self.branches:
            self.local_branch = LocalSpatialBranch(channels, reduction, dilation)
        if "global" in self.branches:
            self.global_branch = GlobalSpatialBranch(channels, nonlocal_reduction, subsample)
        self.cache = None
        self.last_weights = None
        self.last_sar = None

    @property
    def eval_weighting(self) -> str:
        return self._eval_weighting

    @eval_weighting.setter
    def eval_weighting(self, mode: str) -> None:
        if mode not in EVAL_WEIGHTINGS:
            raise ValueError(f"BA2M: eval_weighting must be one of {EVAL_WEIGHTINGS}, got {mode!r}")
        self._eval_weighting = mode

    def forward(self, x):
        check_input(f"BA2M({self.channels})", x, self.channels)
        xp = backend.array_module(x)
        n = x.shape[0]
        if (not self.training and self.eval_weighting == "uniform") or (n == 1 and self.normalisation == "softmax"):
            self.cache = None
            self.last_weights = xp.ones(n, dtype=x.dtype)
            self.last_sar = xp.full(n, float("nan"), dtype=x.dtype)
            return x.copy()
        if n == 1 and self.training:
            raise ValueError(f"BA2M({self.channels}): training with normalisation='sigmoid' needs a batch of at least "
                             f"2 samples (the branch BNs estimate batch statistics), got input shape {tuple(x.shape)}")
        maps = self._branch_maps(x)
        a, sar_cache = sar_fusion_forward(*maps)
        forward, _ = NORMALISATIONS[self.normalisation]
        y, weight_cache = forward(x, a, self.temperature)
        self.cache = (sar_cache, weight_cache)
        self.last_weights, self.last_sar = weight_cache[1], a
        return y

    def _branch_maps(self, x):
        """(A_C (N, C), A_LS (N, H, W), A_GS (N, H, W)), None for a branch that is off."""
        n, _, h, w = x.shape
        a_c = self.channel_branch.forward(x) if "channel" in self.branches else None
        a_ls = self.local_branch.forward(x).reshape(n, h, w) if "local" in self.branches else None
        a_gs = self.global_branch.forward(x).reshape(n, h, w) if "global" in self.branches else None
        return a_c, a_ls, a_gs

    def backward(self, dy):
        if self.cache is None:                 # the weights were 1 whatever the branches said
            return dy.copy()
        sar_cache, weight_cache = self.cache
        _, backward = NORMALISATIONS[self.normalisation]
        dx, da = backward(dy, weight_cache)
        da_c, da_ls, da_gs = sar_fusion_backward(da, sar_cache)
        n, _, h, w = dx.shape
        if da_c is not None:
            dx += self.channel_branch.backward(da_c)
        if da_ls is not None:
            dx += self.local_branch.backward(da_ls.reshape(n, 1, h, w))
        if da_gs is not None:
            dx += self.global_branch.backward(da_gs.reshape(n, 1, h, w))
        return dx

    def zero_gradient_parameters(self) -> tuple:
        """Names (as in ``named_parameters``) of the parameters whose gradient is exactly zero for
        the last forward pass — true zeros of the maths, which a gradient check must compare in
        absolute terms (``check_module(known_zero=...)``):

        - a bias feeding a batch norm in train mode (the batch mean removes it): FC_1, every
          conv of the local branch, the values g and W_z of the global branch;
        - the key bias phi.b (it adds the same amount to every key score of a query);
        - theta and phi entirely when there is a single key position (softmax of one score is 1);
        - with "softmax" and a single branch, that branch's last BN shift (it moves every SAR by
          the same amount, and the batch softmax ignores a common shift);
        - everything when the branches were skipped (w = 1 regardless).
        """
        names = [q for q, _, _ in self.named_parameters()]
        if self.cache is None:
            return tuple(names)
        zero = ["global_branch.phi.b"] if "global" in self.branches else []
        if self.training:
            zero += ["channel_branch.3.b", "local_branch.0.b", "local_branch.3.b", "local_branch.6.b",
                     "global_branch.g.b", "global_branch.w_z.b"]
        if "global" in self.branches and self.global_branch.key_positions() == 1:
            zero += ["global_branch.theta.w", "global_branch.theta.b", "global_branch.phi.w"]
        if self.normalisation == "softmax" and len(self.branches) == 1:
            zero += {"channel": ["channel_branch.4.beta"], "local": ["local_branch.7.beta"],
                     "global": ["global_branch.bn.beta"]}[self.branches[0]]
        return tuple(n for n in names if n in zero)

    def extra_repr(self):
        return (f"{self.channels}, branches={self.branches}, temperature={self.temperature}, "
                f"normalisation={self.normalisation!r}, eval_weighting={self.eval_weighting!r}")


def zero_gradient_parameters(model) -> tuple:
    """Qualified names of the exactly-zero-gradient parameters of every BA2M inside ``model``
    (after a forward pass), for ``check_module(model, ..., known_zero=...)``."""
    names = []
    for prefix, mod in model.named_modules():
        if isinstance(mod, BA2M):
            names += [f"{prefix}.{p}" if prefix else p for p in mod.zero_gradient_parameters()]
    return tuple(names)
