"""Contracts every Module keeps (the modules of tinyba2m.nn, the attention modules and the
models; a last test makes sure each Module subclass is in the table):

- ``backward`` before any ``forward`` raises "backward called before forward";
- ``backward`` refuses an upstream gradient not shaped like the forward output, with a
  ValueError naming the module, the expected and the actual shape;
- a second ``backward`` after one ``forward`` gives the same input gradient (no cache is used up
  or overwritten by a backward pass);
- after a ``forward`` that failed, ``backward`` does not reuse the cache of an earlier pass;
- an empty batch gives either a clear ValueError naming the module (or the part of it that needs
  a batch) or the natural empty result, whose backward is empty too.
"""
import pytest

import tinyba2m.attention
import tinyba2m.models
import tinyba2m.nn
from tinyba2m import backend
from tinyba2m.attention import BA2M, BAM, CBAM, BAMSpatialBranch, SEBlock
from tinyba2m.attention.branches import ChannelBranch, GlobalSpatialBranch, LocalSpatialBranch
from tinyba2m.models.resnet import BasicBlock, CifarResNet
from tinyba2m.models.shortcut import ZeroPadShortcut
from tinyba2m.models.smallcnn import SmallCNN
from tinyba2m.nn import (AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormReLU2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU,
                         Sequential, Sigmoid, Softmax)
from tinyba2m.nn.module import Module

# name -> (make module, input shape)
MODULES = {
    "ReLU": (ReLU, (2, 3, 4)),
    "Sigmoid": (Sigmoid, (2, 3, 4)),
    "Softmax": (lambda: Softmax(axis=1), (2, 3, 4)),
    "Flatten": (Flatten, (2, 3, 2, 2)),
    "MaxPool2d": (lambda: MaxPool2d(2), (2, 3, 4, 4)),
    "AvgPool2d": (lambda: AvgPool2d(3, 2, 1), (2, 3, 5, 5)),
    "GlobalAvgPool2d": (GlobalAvgPool2d, (2, 3, 4, 4)),
    "Sequential": (lambda: Sequential(Linear(4, 3), ReLU()), (2, 4)),
    "Linear": (lambda: Linear(4, 3), (2, 4)),
    "BatchNorm1d": (lambda: BatchNorm1d(3), (4, 3)),
    "BatchNorm2d": (lambda: BatchNorm2d(3), (2, 3, 4, 4)),
    "BatchNormReLU2d": (lambda: BatchNormReLU2d(3), (2, 3, 4, 4)),
    "Conv2d": (lambda: Conv2d(3, 4, 3, padding=1), (2, 3, 5, 5)),
    "Conv2d(1x1)": (lambda: Conv2d(3, 4, 1), (2, 3, 5, 5)),
    "ChannelBranch": (lambda: ChannelBranch(8), (3, 8, 4, 4)),
    "LocalSpatialBranch": (lambda: LocalSpatialBranch(8, dilation=2), (3, 8, 4, 4)),
    "GlobalSpatialBranch": (lambda: GlobalSpatialBranch(8), (3, 8, 4, 4)),
    "SEBlock": (lambda: SEBlock(8), (2, 8, 4, 4)),
    "CBAM": (lambda: CBAM(8), (2, 8, 4, 4)),
    "BAMSpatialBranch": (lambda: BAMSpatialBranch(8, dilation=2), (3, 8, 4, 4)),
    "BAM": (lambda: BAM(8, dilation=2), (3, 8, 4, 4)),
    "ZeroPadShortcut": (lambda: ZeroPadShortcut(3, 6, 2), (2, 3, 4, 4)),
    "BA2M": (lambda: BA2M(8), (3, 8, 4, 4)),
    "BasicBlock": (lambda: BasicBlock(4, 4), (2, 4, 4, 4)),
    "CifarResNet": (lambda: CifarResNet(8, num_classes=5, widths=(4, 4, 4)), (2, 3, 8, 8)),
    "SmallCNN": (lambda: SmallCNN(num_classes=5, widths=(4, 4, 4)), (2, 3, 8, 8)),
}

# Modules in files another change owns (issue 9/10): their backward does not yet check dout
# itself (a child's check names the child) or keeps the cache of an earlier pass after a failed
# forward. Strict: once wired (Module.keep / Module.saved), these fail as XPASS — delete them here.
def build(name, dtype="float64"):
    backend.seed(0)
    make, shape = MODULES[name]
    module = make().astype(dtype)
    x = backend.get_xp().asarray(backend.new_host_rng(1).standard_normal(shape).astype(dtype))
    return module, x


def names_in(module):
    """The class names of a module and its descendants (what an error may name)."""
    return {type(m).__name__ for _, m in module.named_modules()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_backward_before_forward_is_clear(name):
    module, x = build(name)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        module.backward(x)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_backward_refuses_a_wrong_dout_shape(name):
    module, x = build(name)
    out = module.forward(x)
    xp = backend.get_xp()
    shape = tuple(out.shape)
    for bad in [(shape[0] + 1,) + shape[1:], shape + (1,), shape[:-1] + (shape[-1] + 1,)]:
        with pytest.raises(ValueError) as err:
            module.backward(xp.ones(bad))
        msg = str(err.value)
        assert msg.startswith(module.label() + ":"), f"{name}: the error must name the module: {msg}"
        assert str(shape) in msg and str(bad) in msg, f"{name}: the error must give both shapes: {msg}"
    assert module.backward(xp.ones(shape)).shape == x.shape


@pytest.mark.parametrize("name", sorted(MODULES))
def test_second_backward_gives_the_same_input_gradient(name):
    module, x = build(name)
    out = module.forward(x)
    dout = backend.get_xp().asarray(backend.new_host_rng(2).standard_normal(out.shape))
    first = module.backward(dout).copy()
    second = module.backward(dout)
    assert bool((first == second).all()), f"{name}: a second backward after one forward gave another gradient"


def bad_inputs(x):
    """Inputs every module refuses: one axis fewer, and integers."""
    xp = backend.array_module(x)
    return [x.reshape(x.shape[:-2] + (-1,)) if x.ndim > 2 else x.reshape(-1), xp.ones(x.shape, dtype=xp.int64)]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_failed_forward_leaves_no_stale_cache(name):
    module, x = build(name)
    module.forward(x)
    refused = 0
    for bad in bad_inputs(x):
        try:
            module.forward(bad)
        except ValueError:
            refused += 1
            with pytest.raises(RuntimeError, match="backward called before forward"):
                module.backward(bad)
    assert refused, f"{name}: accepted every bad input"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_empty_batch_is_refused_clearly_or_gives_an_empty_result(name):
    module, x = build(name)
    empty = x[:0]
    try:
        out = module.forward(empty)
    except ValueError as err:
        msg = str(err)
        assert "empty batch" in msg and any(msg.startswith(n) for n in names_in(module)), f"{name}: unclear: {msg}"
        return
    assert out.shape[0] == 0
    dx = module.backward(backend.get_xp().zeros(out.shape))
    assert dx.shape == empty.shape


def test_every_module_class_is_in_the_table():
    classes, seen = [Module], set()
    while classes:
        for sub in classes.pop().__subclasses__():
            classes.append(sub)
            if sub.__module__.startswith("tinyba2m.") and not sub.__name__.startswith("_") and sub.__name__ != "OpModule":
                seen.add(sub.__name__)
    assert seen - {n.split("(")[0] for n in MODULES} - set(SEVERAL_INPUTS) == set()


# Children of BA2M whose forward takes several inputs (the branch maps; x and the SARs), so the
# table's one-input tests do not fit them: the same contracts, checked here.
def _sar():
    from tinyba2m.attention import SAR
    rng = backend.new_host_rng(3)
    return SAR(), [rng.standard_normal((3, 5)), rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))]


def _weighting():
    from tinyba2m.attention import SampleWeighting
    rng = backend.new_host_rng(4)
    return SampleWeighting("softmax", 0.5), [rng.standard_normal((3, 2, 2, 2)), rng.standard_normal(3)]


SEVERAL_INPUTS = {"SAR": _sar, "SampleWeighting": _weighting}


@pytest.mark.parametrize("name", sorted(SEVERAL_INPUTS))
def test_several_input_children_keep_the_contracts(name):
    module, inputs = SEVERAL_INPUTS[name]()
    inputs = [backend.get_xp().asarray(a) for a in inputs]
    with pytest.raises(RuntimeError, match="backward called before forward"):
        module.backward(backend.get_xp().ones(3))
    out = module.forward(*inputs)
    shape = tuple(out.shape)
    bad = (shape[0] + 1,) + shape[1:]
    with pytest.raises(ValueError) as err:
        module.backward(backend.get_xp().ones(bad))
    assert str(err.value).startswith(module.label() + ":") and str(shape) in str(err.value) and str(bad) in str(err.value)
    dout = backend.get_xp().asarray(backend.new_host_rng(2).standard_normal(shape))
    first = [g.copy() for g in module.backward(dout)]
    second = module.backward(dout)
    assert all(bool((a == b).all()) for a, b in zip(first, second))
    assert [g.shape for g in first] == [a.shape for a in inputs]
