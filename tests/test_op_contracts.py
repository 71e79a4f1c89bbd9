"""Contracts every op pair keeps: forward and backward never modify their inputs (nor the
upstream gradient), float32 inputs give float32 outputs and gradients, and backward refuses an
upstream gradient that is not shaped like the forward output (a ValueError naming the op, the
expected and the actual shape). The supported dtypes are float32 and float64: any other dtype of a
float input (float16, an integer array) or of the upstream gradient is refused at the op's entry
with a ValueError naming the op, the input, the expected and the actual dtype. A last test makes sure every ``*_forward`` of the op files
appears in the table below. (Module contracts: tests/test_module_contracts.py.)"""
import inspect

import pytest

from tinyba2m import backend
from tinyba2m.attention import nonlocal_attention, sar, weighting
from tinyba2m.ops import activations, batchnorm, conv, focal_loss, linear, losses, pooling, shortcut

OP_MODULES = [activations, batchnorm, conv, focal_loss, linear, losses, pooling, nonlocal_attention, shortcut, sar, weighting]


def _bn(shape, training):
    def make(xp, dtype, r):
        c = shape[1]
        arrays = [r.standard_normal(shape), 1 + 0.1 * r.standard_normal(c), r.standard_normal(c),
                  r.standard_normal(c), r.uniform(0.5, 2, c)]
        return [xp.asarray(a.astype(dtype)) for a in arrays], {"training": training}
    return make


def _floats(*shapes, **kwargs):
    def make(xp, dtype, r):
        return [xp.asarray(r.standard_normal(s).astype(dtype)) for s in shapes], dict(kwargs)
    return make


def _cross_entropy(smoothing):
    def make(xp, dtype, r):
        return [xp.asarray(r.standard_normal((4, 5)).astype(dtype)), xp.asarray(r.integers(0, 5, 4))], {"label_smoothing": smoothing}
    return make


def _focal(gamma):
    def make(xp, dtype, r):
        return [xp.asarray(r.standard_normal((4, 5)).astype(dtype)), xp.asarray(r.integers(0, 5, 4))], {"gamma": gamma}
    return make


# name -> (forward, backward, make(xp, dtype, host_rng) -> (positional inputs, keyword arguments))
SPECS = {
    "conv2d": (conv.conv2d_forward, conv.conv2d_backward, _floats((2, 3, 6, 6), (4, 3, 3, 3), (4,), padding=1)),
    "conv2d(s=2,d=2,no bias)": (conv.conv2d_forward, conv.conv2d_backward, _floats((2, 3, 7, 7), (4, 3, 2, 2), stride=2, dilation=2)),
    "conv2d(1x1)": (conv.conv2d_forward, conv.conv2d_backward, _floats((2, 3, 4, 5), (4, 3, 1, 1), (4,))),
    "conv2d_naive": (conv.conv2d_forward_naive, conv.conv2d_backward_naive, _floats((2, 3, 5, 5), (2, 3, 3, 3), (2,), padding=1)),
    "max_pool2d": (pooling.max_pool2d_forward, pooling.max_pool2d_backward, _floats((2, 3, 6, 6), kernel_size=2)),
    "max_pool2d(k=3,s=2,p=1)": (pooling.max_pool2d_forward, pooling.max_pool2d_backward,
                                _floats((2, 3, 5, 5), kernel_size=3, stride=2, padding=1)),
    "avg_pool2d": (pooling.avg_pool2d_forward, pooling.avg_pool2d_backward, _floats((2, 3, 6, 6), kernel_size=2)),
    "avg_pool2d(k=3,s=2,p=1)": (pooling.avg_pool2d_forward, pooling.avg_pool2d_backward,
                                _floats((2, 3, 5, 5), kernel_size=3, stride=2, padding=1)),
    "global_avg_pool": (pooling.global_avg_pool_forward, pooling.global_avg_pool_backward, _floats((2, 3, 4, 4))),
    "global_max_pool": (pooling.global_max_pool_forward, pooling.global_max_pool_backward, _floats((2, 3, 4, 4))),
    "channel_pool": (pooling.channel_pool_forward, pooling.channel_pool_backward, _floats((2, 3, 4, 4))),
    "batchnorm(NC,train)": (batchnorm.batchnorm_forward, batchnorm.batchnorm_backward, _bn((5, 3), True)),
    "batchnorm(NC,eval)": (batchnorm.batchnorm_forward, batchnorm.batchnorm_backward, _bn((5, 3), False)),
    "batchnorm(NCHW,train)": (batchnorm.batchnorm_forward, batchnorm.batchnorm_backward, _bn((2, 3, 4, 4), True)),
    "batchnorm(NCHW,eval)": (batchnorm.batchnorm_forward, batchnorm.batchnorm_backward, _bn((2, 3, 4, 4), False)),
    "batchnorm_relu(NCHW,train)": (batchnorm.batchnorm_relu_forward, batchnorm.batchnorm_relu_backward, _bn((2, 3, 4, 4), True)),
    "batchnorm_relu(NCHW,eval)": (batchnorm.batchnorm_relu_forward, batchnorm.batchnorm_relu_backward, _bn((2, 3, 4, 4), False)),
    "linear": (linear.linear_forward, linear.linear_backward, _floats((4, 3), (3, 2), (2,))),
    "linear(no bias)": (linear.linear_forward, linear.linear_backward, _floats((4, 3), (3, 2))),
    "flatten": (linear.flatten_forward, linear.flatten_backward, _floats((2, 3, 2, 2))),
    "relu": (activations.relu_forward, activations.relu_backward, _floats((3, 4))),
    "sigmoid": (activations.sigmoid_forward, activations.sigmoid_backward, _floats((3, 4))),
    "softmax": (activations.softmax_forward, activations.softmax_backward, _floats((3, 4, 2), axis=1)),
    "softmax_cross_entropy": (losses.softmax_cross_entropy_forward, losses.softmax_cross_entropy_backward, _cross_entropy(0.0)),
    "softmax_cross_entropy(smoothing)": (losses.softmax_cross_entropy_forward, losses.softmax_cross_entropy_backward,
                                         _cross_entropy(0.1)),
    "focal_loss": (focal_loss.focal_loss_forward, focal_loss.focal_loss_backward, _focal(2.0)),
    "nonlocal_attention": (nonlocal_attention.nonlocal_attention_forward, nonlocal_attention.nonlocal_attention_backward,
                           _floats((2, 3, 6), (2, 3, 4), (2, 2, 4))),
    "nonlocal_attention(reference)": (nonlocal_attention.nonlocal_attention_forward,
                                      nonlocal_attention.nonlocal_attention_backward_reference, _floats((2, 3, 6), (2, 3, 4), (2, 1, 4))),
    "zero_pad_shortcut": (shortcut.zero_pad_shortcut_forward, shortcut.zero_pad_shortcut_backward,
                          _floats((2, 3, 5, 5), out_channels=6, stride=2)),
    "sar_fusion": (sar.sar_fusion_forward, sar.sar_fusion_backward, _floats((3, 4), (3, 2, 2), (3, 2, 2))),
    "sar_fusion_reference": (sar.sar_fusion_reference_forward, sar.sar_fusion_reference_backward,
                             _floats((3, 4), (3, 2, 2), (3, 2, 2))),
    "sar": (sar.sar_forward, sar.sar_backward, _floats((3, 4), (3, 2, 2), (3, 2, 2))),
    "batch_softmax_weighting": (weighting.batch_softmax_weighting_forward, weighting.batch_softmax_weighting_backward,
                                _floats((3, 2, 2, 2), (3,))),
    "softmax_sum_weighting": (weighting.softmax_sum_weighting_forward, weighting.softmax_sum_weighting_backward,
                              _floats((3, 2, 2, 2), (3,))),
    "population_weighting": (weighting.population_weighting_forward, weighting.population_weighting_backward,
                             _floats((3, 2, 2, 2), (3,), (1,))),
    "sigmoid_weighting": (weighting.sigmoid_weighting_forward, weighting.sigmoid_weighting_backward,
                          _floats((3, 2, 2, 2), (3,))),
}

# Op pairs in files another change owns (BA2M readings, issue 9) whose backward does not yet call
# validation.require_dout. Strict: once it does, the test XPASSes and fails — delete the name here.
def run(xp, name, dtype):
    forward, backward, make = SPECS[name]
    args, kwargs = make(xp, dtype, backend.new_host_rng(0))
    out, cache = forward(*args, **kwargs)
    dout = xp.asarray(backend.new_host_rng(1).standard_normal(out.shape).astype(dtype))
    return args, dout, out, cache, backward


def as_tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_never_mutates_inputs(xp, name):
    forward, backward, make = SPECS[name]
    args, kwargs = make(xp, "float64", backend.new_host_rng(0))
    before = [a.copy() for a in args]
    out, cache = forward(*args, **kwargs)
    dout = xp.asarray(backend.new_host_rng(1).standard_normal(out.shape))
    dout_before = dout.copy()
    backward(dout, cache)
    out2, _ = forward(*args, **kwargs)  # a second pass sees the same inputs and gives the same output
    for i, (a, b) in enumerate(zip(args, before)):
        assert xp.array_equal(a, b), f"{name}: input {i} was modified"
    assert xp.array_equal(dout, dout_before), f"{name}: backward modified dout"
    assert xp.array_equal(out, out2), f"{name}: output changed between two identical calls"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_float32_in_float32_out(xp, name):
    args, dout, out, cache, backward = run(xp, name, "float32")
    assert out.dtype == xp.float32, f"{name}: output is {out.dtype}"
    grads = as_tuple(backward(dout, cache))
    for i, g in enumerate(grads):
        if g is not None:
            assert g.dtype == xp.float32, f"{name}: gradient {i} is {g.dtype}"
    if isinstance(cache, dict) and "running_mean" in cache:
        assert cache["running_mean"].dtype == xp.float32 and cache["running_var"].dtype == xp.float32


@pytest.mark.parametrize("name", sorted(SPECS))
def test_float64_in_float64_out(xp, name):
    args, dout, out, cache, backward = run(xp, name, "float64")
    assert out.dtype == xp.float64
    assert all(g is None or g.dtype == xp.float64 for g in as_tuple(backward(dout, cache)))


UNSUPPORTED = ["float16", "int64", "int32"]


def float_inputs(forward, args):
    """(position, parameter name) of each float input of the op (labels and the like are left out)."""
    names = list(inspect.signature(forward).parameters)
    return [(i, names[i]) for i, a in enumerate(args) if backend.is_float_dtype(a.dtype)]


@pytest.mark.parametrize("dtype", UNSUPPORTED)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_refuses_an_unsupported_dtype_of_each_float_input(xp, name, dtype):
    forward, backward, make = SPECS[name]
    args, kwargs = make(xp, "float64", backend.new_host_rng(0))
    inputs = float_inputs(forward, args)
    assert inputs, f"{name}: no float input"
    for i, pname in inputs:
        bad = list(args)
        bad[i] = (args[i] * 3).astype(dtype)
        with pytest.raises(ValueError) as err:
            forward(*bad, **kwargs)
        msg = str(err.value)
        assert msg == (f"{op_label(forward)}: expected {pname} to be a floating-point array (float32 or float64), "
                       f"got dtype {dtype}"), f"{name}, input {pname}: {msg}"


@pytest.mark.parametrize("dtype", ["float16", "int64"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_backward_refuses_an_unsupported_dout_dtype(xp, name, dtype):
    args, dout, out, cache, backward = run(xp, name, "float64")
    with pytest.raises(ValueError) as err:
        backward(dout.astype(dtype), cache)
    assert str(err.value).startswith(f"{op_label(SPECS[name][0])}: backward expected dout to be a floating-point array "
                                     f"(float32 or float64), got dtype {dtype}"), str(err.value)


def test_a_conv2d_module_refuses_float16_instead_of_returning_float32(xp):
    """The case the issue found: Conv2d turned a float16 input into a float32 output."""
    from tinyba2m.nn import Conv2d
    with pytest.raises(ValueError, match=r"^conv2d: expected x to be a floating-point array \(float32 or float64\), got dtype float16$"):
        Conv2d(3, 4, 3)(xp.ones((2, 3, 5, 5), dtype=xp.float16))


def op_label(forward) -> str:
    """The name an op's errors use: its forward's name without ``_forward``."""
    return forward.__name__.replace("_forward", "")


def wrong_shapes(shape):
    """Upstream gradients of the wrong shape: one more sample, a shorter last axis (or a longer
    one when it has length 1), an extra axis; for a scalar output, shapes (1,) and (2,)."""
    if not shape:
        return [(1,), (2,)]
    out = [(shape[0] + 1,) + shape[1:], shape + (1,)]
    if len(shape) > 1:
        out.append(shape[:-1] + ((shape[-1] - 1) if shape[-1] > 1 else 2,))
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
def test_backward_refuses_a_wrong_dout_shape(xp, name):
    forward, backward, make = SPECS[name]
    args, kwargs = make(xp, "float64", backend.new_host_rng(0))
    out, cache = forward(*args, **kwargs)
    shape = tuple(out.shape)
    for bad in wrong_shapes(shape):
        dout = xp.ones(bad)
        with pytest.raises(ValueError) as err:
            backward(dout, cache)
        msg = str(err.value)
        assert msg.startswith(op_label(forward) + ":"), f"{name}: {msg}"
        assert str(shape) in msg and str(bad) in msg, f"{name}: the message must give both shapes: {msg}"
    with pytest.raises(ValueError, match=op_label(forward) + r": backward expected dout .*got a NoneType"):
        backward(None, cache)
    backward(xp.ones(shape), cache)  # the right shape still works afterwards


def test_every_foundation_op_is_in_the_table():
    covered = {spec[0] for spec in SPECS.values()}
    for mod in OP_MODULES:
        for fname, fn in inspect.getmembers(mod, inspect.isfunction):
            if fname.endswith("_forward") and fn.__module__ == mod.__name__:
                assert fn in covered, f"{mod.__name__}.{fname} is not covered by the op contract tests"
                assert hasattr(mod, fname[: -len("_forward")] + "_backward"), f"{fname} has no backward"
