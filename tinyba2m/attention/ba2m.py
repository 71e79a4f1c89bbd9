"""BA²M, the batch aware attention module: one scalar weight per sample, set by comparing the
samples of the batch.

    A_C, A_LS, A_GS = branches(X)                 (N, C), (N, 1, H, W), (N, 1, H, W)
    a_i = mean_{c,y,x} sigmoid(max(A_C[i,c], A_LS[i,y,x], A_GS[i,y,x]))   SAR, (N,), in (0, 1)
          (``sar_activation="none"``: the raw mean of the max, unbounded)
    w   = N * softmax(a / tau)                    ("softmax", default; mean(w) = 1)
        | softmax(a / tau)                        ("softmax_sum": the paper's formula literally, sum 1)
        | 2 * sigmoid(a / tau)                    ("sigmoid": per sample, no coupling)
    Y_i = w_i * X_i

With the sigmoid SAR and a softmax, ``w_max / w_min < e^(1 / tau)`` in every batch.

Backward sums every path to X: the direct one ``w_i dY_i`` and, through da -> SAR -> the
branches, the one through the weights (which mixes samples for the softmaxes, and through the
batch statistics of the branch BNs in training).

Modes. ``train()``: BN batch statistics, weights from the batch; each training batch also updates
the running log-mean-exp ``m <- 0.9 m + 0.1 (logsumexp(a / tau) - log N)`` (buffer
``weighting.population_log_norm``; the first batch sets it) and records the batch size (buffer
``weighting.population_batch_size``, 0 until the first training batch). ``eval()``: BN running
statistics, and ``eval_weighting`` picks

- ``"population"`` (default): ``w_i = exp(a_i / tau - m)`` (``/ N_train`` for "softmax_sum"),
  a prediction depends on its own sample only, on the training scale. A module that has never
  seen a training batch (or loaded an old checkpoint without the buffers) falls back to
  ``"batch"`` and warns once. For "sigmoid" it is the same as "batch" (per sample already);
- ``"batch"``: the softmax over the evaluation batch, as in training;
- ``"uniform"``: every sample gets the same weight: 1 (``1 / N_train`` for "softmax_sum").

When the weights do not depend on the branches — "uniform" eval, or a batch of one with a softmax
in training or "batch" eval (a softmax of one value is exactly 1) — the branches are skipped:
``Y = w X``, ``last_weights`` holds that constant and ``last_sar`` is NaN (not computed).
"""
from __future__ import annotations

from .. import backend
from ..ops.validation import require_positive_int
from .branches import _AttentionModule, ChannelBranch, GlobalSpatialBranch, LocalSpatialBranch
from .options import BRANCHES, EVAL_WEIGHTINGS, BA2MOptions
from .sar import SAR
from .weighting import NORMALISATIONS, SampleWeighting

__all__ = ["BA2M", "BA2MOptions", "BRANCHES", "EVAL_WEIGHTINGS", "NORMALISATIONS"]


class BA2M(_AttentionModule):
    """(N, C, H, W) -> same shape, ``Y_i = w_i X_i``. See the module docstring and docs/BA2M.md.

    ``BA2M(channels, options)`` with a :class:`BA2MOptions` (kept as given), or ``BA2M(channels,
    temperature=0.5, ...)`` (the options built from these keywords). Children: the branches that
    are on, ``sar`` (:class:`~.sar.SAR`) and ``weighting`` (:class:`~.weighting.SampleWeighting`,
    which holds the population buffers and decides what weights each pass uses)."""

    # states saved before the weighting held the population buffers
    renamed_state = {"population_log_norm": "weighting.population_log_norm",
                     "population_batch_size": "weighting.population_batch_size"}

    def __init__(self, channels: int, options: BA2MOptions | None = None, **option_values):
        super().__init__()
        require_positive_int("BA2M", "channels", channels)
        if options is not None and option_values:
            raise TypeError(f"BA2M: give a BA2MOptions or option keywords, not both (got {sorted(option_values)})")
        options = options if options is not None else BA2MOptions(**option_values)
        self.channels, self.options, self.branches = channels, options, options.branches
        if "channel" in self.branches:
            self.channel_branch = ChannelBranch(channels, options.reduction)
        if "local" in self.branches:
            self.local_branch = LocalSpatialBranch(channels, options.reduction, options.dilation)
        if "global" in self.branches:
            self.global_branch = GlobalSpatialBranch(channels, options.nonlocal_reduction, options.subsample)
        self.sar = SAR(options.sar_activation)
        self.weighting = SampleWeighting(options.normalisation, options.temperature, options.eval_weighting)
        self.last_weights = self.last_sar = None

    temperature = property(lambda self: self.options.temperature)
    normalisation = property(lambda self: self.options.normalisation)
    sar_activation = property(lambda self: self.options.sar_activation)
    eval_weighting = property(lambda self: self.weighting.eval_weighting,
                              lambda self, mode: setattr(self.weighting, "eval_weighting", mode))

    def forward(self, x):
        self.start_forward(x)
        xp = backend.array_module(x)
        n = x.shape[0]
        plan = self.weighting.plan(n)
        if plan.constant is not None:            # the weights do not depend on the branches: skip them
            c = plan.constant
            self.last_weights = xp.full(n, c, dtype=x.dtype)
            self.last_sar = xp.full(n, float("nan"), dtype=x.dtype)
            return self.keep(x * x.dtype.type(c) if c != 1.0 else x.copy(), ("constant", c))
        if n == 1 and plan.mode == "train":
            raise ValueError(f"{self.label()}: training with normalisation='sigmoid' needs a batch of at least "
                             f"2 samples (the branch BNs estimate batch statistics), got input shape {tuple(x.shape)}")
        a = self.sar.forward(*self._branch_maps(x))
        y = self.weighting.forward(x, a, plan)
        self.last_weights, self.last_sar = self.weighting.last_weights, a
        return self.keep(y, ("weighted", plan.mode))

    def _branch_modules(self):
        """(attribute name, module) of the branches that are on, in the order C, LS, GS."""
        return [(f"{b}_branch", getattr(self, f"{b}_branch")) for b in self.branches]

    def _branch_maps(self, x):
        """(A_C (N, C), A_LS (N, H, W), A_GS (N, H, W)), None for a branch that is off."""
        n, _, h, w = x.shape
        a_c = self.channel_branch.forward(x) if "channel" in self.branches else None
        a_ls = self.local_branch.forward(x).reshape(n, h, w) if "local" in self.branches else None
        a_gs = self.global_branch.forward(x).reshape(n, h, w) if "global" in self.branches else None
        return a_c, a_ls, a_gs

    def backward(self, dy):
        kind, value = self.saved(dy)
        if kind == "constant":                   # the weights did not depend on the branches: Y = value X
            return dy * dy.dtype.type(value) if value != 1.0 else dy.copy()
        dx, da = self.weighting.backward(dy)
        da_maps = [g for g in self.sar.backward(da) if g is not None]    # in the order of self.branches
        for (_, branch), da_map in zip(self._branch_modules(), da_maps):
            dx += branch.backward(da_map if da_map.ndim == 2 else da_map[:, None])   # spatial: (N, 1, H, W)
        return dx

    def zero_gradient_parameters(self) -> tuple:
        """Names (as in ``named_parameters``) of the parameters whose gradient is exactly zero for
        the last forward pass — true zeros of the maths, which a gradient check must compare in
        absolute terms (``check_module(known_zero=...)``). Each branch names its own
        (``zero_gradient_parameters`` in :mod:`.branches`, declared beside its layers):

        - a bias feeding a batch norm in train mode (the batch mean removes it): FC_1, every
          conv of the local branch, the values g and W_z of the global branch;
        - the key bias phi.b (it adds the same amount to every key score of a query);
        - theta and phi entirely when there is a single key position (softmax of one score is 1);
        - with a softmax over the batch ("softmax" / "softmax_sum" in training or "batch" eval), the
          raw SAR (``sar_activation="none"``) and a single branch, that branch's last BN shift (it
          moves every SAR by the same amount, and the batch softmax ignores a common shift);
        - everything when the branches were skipped (constant weights).
        """
        names = [q for q, _, _ in self.named_parameters()]
        if self.cache is None or self.cache[0] == "constant":
            return tuple(names)
        shift_free = (self.weighting.ignores_a_common_shift(self.cache[1]) and self.sar_activation == "none"
                      and len(self.branches) == 1)
        zero = [f"{attr}.{p}" for attr, branch in self._branch_modules()
                for p in branch.zero_gradient_parameters(shift_free)]
        return tuple(n for n in names if n in zero)

    def extra_repr(self):
        return (f"{self.channels}, branches={self.branches}, sar_activation={self.sar_activation!r}, "
                f"temperature={self.temperature}, normalisation={self.normalisation!r}, "
                f"eval_weighting={self.eval_weighting!r}")

