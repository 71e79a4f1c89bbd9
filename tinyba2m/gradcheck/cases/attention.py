"""Gradient-check cases for BA²M: the op pairs, the three branches, the whole module, and the
baselines SE, CBAM and BAM.

Shapes are small (N = 3, C = 8, 4x4 or 6x6 maps). Biases that a following batch norm (or the
softmax's shift invariance) cancels have an exact gradient of zero; they are checked as such
(``known_zero``). Big parameter tensors are checked along random directions (``max_full``).
"""
from __future__ import annotations

from ... import backend
from ...attention import (BA2M, BAM, CBAM, BAMSpatialBranch, ChannelBranch, GlobalSpatialBranch, LocalSpatialBranch, SEBlock,
                          batch_softmax_weighting_backward, batch_softmax_weighting_forward,
                          nonlocal_attention_backward, nonlocal_attention_forward, sar_fusion_backward,
                          sar_fusion_forward, sigmoid_weighting_backward, sigmoid_weighting_forward)
from ...attention.sar import sar_backward, sar_forward
from ...attention.weighting import (population_weighting_backward, population_weighting_forward,
                                    softmax_sum_weighting_backward, softmax_sum_weighting_forward)
from ..checker import check_module, check_op, merge_results
from ..registry import register, register_with
from . import module_case
from .inputs import normal

MODULE_SHAPE = (3, 8, 6, 6)
BA2M_SHAPE = (3, 8, 4, 4)


@register("nonlocal_attention")
def _nonlocal_attention():
    one = check_op(nonlocal_attention_forward, nonlocal_attention_backward,
                   [normal((3, 4, 12)), normal((3, 4, 5), 2), normal((3, 1, 5), 3)], names=["theta", "phi", "g"])
    many = check_op(nonlocal_attention_forward, nonlocal_attention_backward,
                    [normal((3, 4, 12), 4), normal((3, 4, 5), 5), normal((3, 3, 5), 6)], names=["theta", "phi", "g"])
    return merge_results("nonlocal_attention", [("V=1", one), ("V=3", many)])


def _sar_subsets(name, forward, backward, **kwargs):
    """``forward`` / ``backward`` checked for every subset of the branch maps."""
    results = []
    for label, keep in (("C+LS+GS", (0, 1, 2)), ("C+LS", (0, 1)), ("LS+GS", (1, 2)), ("C", (0,)), ("GS", (2,))):
        maps = [normal((3, 8), 7), normal((3, 5, 4), 8), normal((3, 5, 4), 9)]
        used = [maps[i] for i in keep]

        def fwd(*arrays, keep=keep):
            full = [None, None, None]
            for i, a in zip(keep, arrays):
                full[i] = a
            return forward(*full, **kwargs)

        def bwd(da, cache, keep=keep):
            grads = backward(da, cache)
            return tuple(grads[i] for i in keep)

        results.append((label, check_op(fwd, bwd, used, names=[("a_c", "a_ls", "a_gs")[i] for i in keep])))
    return merge_results(name, results)


register_with("sar_fusion", _sar_subsets, sar_fusion_forward, sar_fusion_backward)


@register("sar")
def _sar():
    """The SAR of BA²M under both activations (sigmoid: the default; none: the raw mean of the max)."""
    return merge_results("sar", [(activation, _sar_subsets("sar", sar_forward, sar_backward, activation=activation))
                                 for activation in ("sigmoid", "none")])


def _weighting(name, forward, backward, variants=(("tau=1", {}), ("tau=0.5", {"temperature": 0.5}))):
    """A weighting op pair on x (4, 2, 3, 3) and a (4,), once per (label, keyword arguments)."""
    return merge_results(name, [(label, check_op(forward, backward, [normal((4, 2, 3, 3), 1 + 2 * i), normal((4,), 2 + 2 * i)],
                                                 names=["x", "a"], kwargs=kwargs)) for i, (label, kwargs) in enumerate(variants)])


register_with("batch_softmax_weighting", _weighting, batch_softmax_weighting_forward,
              batch_softmax_weighting_backward)
register_with("softmax_sum_weighting", _weighting, softmax_sum_weighting_forward, softmax_sum_weighting_backward)
# The eval weighting w_i = scale exp(a_i / tau - m) with a fixed running log-mean-exp m.
register_with("population_weighting", _weighting, population_weighting_forward, population_weighting_backward,
              [("tau=1", {"log_norm": 0.3}),
               ("tau=0.5,scale=1/8", {"log_norm": -0.7, "temperature": 0.5, "scale": 0.125})])
register_with("sigmoid_weighting", _weighting, sigmoid_weighting_forward, sigmoid_weighting_backward,
              [("", {"temperature": 0.5})])


def _branch(name, make):
    """A branch in train mode; its exactly-zero gradients are the ones it declares for a forward pass."""
    backend.seed(0)
    zero = known_zero(make(), MODULE_SHAPE)
    backend.seed(0)
    return check_module(make(), MODULE_SHAPE, name=name, known_zero=zero, max_full=256)


register_with("channel_branch", _branch, lambda: ChannelBranch(8))
register_with("local_spatial_branch", _branch, lambda: LocalSpatialBranch(8))
register_with("se", module_case, lambda: SEBlock(8, reduction=2), MODULE_SHAPE, max_full=256)
register_with("cbam", module_case, lambda: CBAM(8, reduction=2), MODULE_SHAPE, max_full=256)
register_with("bam_spatial_branch", _branch, lambda: BAMSpatialBranch(8, reduction=2, dilation=2))
register_with("bam", _branch, lambda: BAM(8, reduction=2, dilation=2))


@register("global_spatial_branch")
def _global_spatial_branch():
    cheap = _branch(None, lambda: GlobalSpatialBranch(8))
    plain = _branch(None, lambda: GlobalSpatialBranch(8, value_projection_first=False))
    return merge_results("global_spatial_branch", [("", cheap), ("plain", plain)])


def warmed_up(module, shape, seed=5, steps=3):
    """``module`` in float64 with random biases / BN shifts and running statistics from a few
    training batches — so an eval-mode check does not start at the initial values, where zero
    biases put ReLU inputs exactly on the kink."""
    rng = backend.new_host_rng(seed)
    xp = backend.get_xp()
    module.astype(backend.float64)
    for _, mod, key in module.named_parameters():
        if key in ("b", "beta"):
            mod.params[key] = xp.asarray(0.3 * rng.standard_normal(mod.params[key].shape))
    module.train()
    for _ in range(steps):
        module.forward(xp.asarray(rng.standard_normal(shape)))
    return module


def known_zero(module, shape, train=True):
    """The parameters of a branch or BA2M whose exact gradient is zero for inputs of ``shape``
    (its ``zero_gradient_parameters``), found by one forward pass in float64."""
    module.astype(backend.float64)
    module.train(train)
    module.forward(backend.get_xp().asarray(backend.new_host_rng(99).standard_normal(shape)))
    return module.zero_gradient_parameters()


def _ba2m(name, train=True, h=1e-6, seed=0, **kwargs):
    backend.seed(0)
    module = BA2M(8, **kwargs)
    if not train:   # random biases and running statistics, away from the initial kinks
        module = warmed_up(module, BA2M_SHAPE)
    zero = known_zero(module, BA2M_SHAPE, train)
    return check_module(module, BA2M_SHAPE, name=name, known_zero=zero, max_full=64, train=train, h=h, seed=seed)


register_with("ba2m", _ba2m)
register_with("ba2m_raw_sar", _ba2m, sar_activation="none")
register_with("ba2m_softmax_sum", _ba2m, normalisation="softmax_sum", temperature=0.5)
register_with("ba2m_sigmoid", _ba2m, normalisation="sigmoid", temperature=0.5)


# Eval mode: the branch parameters reach the output only through the small changes of the weights,
# so their gradients are small next to the output and at h = 1e-6 the central differences are
# rounding noise (relative error falls from ~1e-5 at h = 1e-6 to ~1e-8 at 1e-5). With the
# sigmoid SAR, the check's input of seed 0 also puts a unit of the local branch within h of a
# ReLU / max kink (errors 1e-5 that do not fall with h, while seeds 1 and 3 give 1e-8); seed 1.
EVAL_H, EVAL_SEED = 1e-5, 1


@register("ba2m_eval")
def _ba2m_eval():
    """Eval mode under each weighting: population (the default; softmax and softmax_sum) and batch."""
    results = [(f"{mode}/{norm}", _ba2m("ba2m_eval", train=False, h=EVAL_H, seed=EVAL_SEED, eval_weighting=mode,
                                        normalisation=norm))
               for mode, norm in (("population", "softmax"), ("population", "softmax_sum"), ("batch", "softmax"))]
    return merge_results("ba2m_eval", results)


@register("ba2m_branch_subset")
def _ba2m_subset():
    pair = _ba2m("ba2m_branch_subset", branches=("channel", "global"), subsample=1)
    one = _ba2m("ba2m_branch_subset", branches=("local",), temperature=2.0)
    raw = _ba2m("ba2m_branch_subset", branches=("local",), sar_activation="none")
    return merge_results("ba2m_branch_subset", [("C+GS", pair), ("LS", one), ("LS raw", raw)])
