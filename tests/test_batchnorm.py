"""Batch norm: train-mode normalisation, running statistics, eval mode, finite differences,
the BatchNorm1d / BatchNorm2d modules and bad input."""
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import given_settings

from tinyba2m import backend
from tinyba2m.gradcheck import check_module, check_op
from tinyba2m.nn import BatchNorm1d, BatchNorm2d
from tinyba2m.ops.batchnorm import batchnorm_backward, batchnorm_forward

bn_shapes = st.one_of(
    st.tuples(st.integers(2, 6), st.integers(1, 4)),
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
).filter(lambda s: len(s) == 2 or s[0] * s[2] * s[3] >= 2)


def axes_of(shape):
    return (0,) if len(shape) == 2 else (0, 2, 3)


def stats(xp, c, seed=0):
    r = backend.new_host_rng(seed)
    return (xp.asarray(r.standard_normal(c)), xp.asarray(r.uniform(0.5, 2.0, c)),
            xp.asarray(1 + 0.3 * r.standard_normal(c)), xp.asarray(r.standard_normal(c)))


@given_settings()
@given(shape=bn_shapes, seed=st.integers(0, 2**16), scale=st.floats(0.1, 100), shift=st.floats(-50, 50))
def test_train_output_has_mean_0_var_1_per_channel(xp, shape, seed, scale, shift):
    x = xp.asarray(backend.new_host_rng(seed).standard_normal(shape) * scale + shift)
    c = shape[1]
    out, _ = batchnorm_forward(x, xp.ones(c), xp.zeros(c), xp.zeros(c), xp.ones(c), training=True, eps=1e-12)
    ax = axes_of(shape)
    assert xp.allclose(out.mean(axis=ax), 0, atol=1e-8)
    assert xp.allclose(out.var(axis=ax), 1, atol=1e-6)


@given_settings()
@given(shape=bn_shapes, momentum=st.floats(0, 1))
def test_running_stats_update_formula_and_no_mutation(xp, shape, momentum):
    x = xp.asarray(backend.new_host_rng(1).standard_normal(shape) * 2 + 1)
    c = shape[1]
    rm, rv, gamma, beta = stats(xp, c)
    rm0, rv0 = rm.copy(), rv.copy()
    _, cache = batchnorm_forward(x, gamma, beta, rm, rv, training=True, momentum=momentum)
    ax = axes_of(shape)
    m = x.size // c
    assert xp.array_equal(rm, rm0) and xp.array_equal(rv, rv0)  # inputs untouched
    assert xp.allclose(cache["running_mean"], (1 - momentum) * rm0 + momentum * x.mean(axis=ax))
    assert xp.allclose(cache["running_var"], (1 - momentum) * rv0 + momentum * x.var(axis=ax) * m / (m - 1))


@given_settings()
@given(shape=bn_shapes)
def test_eval_mode_uses_running_stats(xp, shape):
    x = xp.asarray(backend.new_host_rng(2).standard_normal(shape))
    c = shape[1]
    rm, rv, gamma, beta = stats(xp, c, 3)
    out, cache = batchnorm_forward(x, gamma, beta, rm, rv, training=False, eps=1e-5)
    bshape = (1, c) + (1,) * (len(shape) - 2)
    want = gamma.reshape(bshape) * (x - rm.reshape(bshape)) / xp.sqrt(rv.reshape(bshape) + 1e-5) + beta.reshape(bshape)
    assert xp.allclose(out, want)
    assert "running_mean" not in cache
    # each sample is normalised on its own: the first sample alone gives the same output
    assert xp.allclose(batchnorm_forward(x[:1], gamma, beta, rm, rv, training=False)[0], out[:1])


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_finite_differences(xp, shape, training):
    c = shape[1]
    rm, rv, gamma, beta = stats(xp, c, 4)
    x = xp.asarray(backend.new_host_rng(5).standard_normal(shape))
    res = check_op(lambda x, g, b: batchnorm_forward(x, g, b, rm, rv, training=training), batchnorm_backward,
                   [x, gamma, beta], names=["x", "gamma", "beta"])
    assert res.passed and res.worst < 1e-6, str(res)


@pytest.mark.parametrize("cls,shape", [(BatchNorm1d, (4, 3)), (BatchNorm2d, (2, 3, 2, 2))])
def test_finite_differences_modules(xp, cls, shape):
    for train in (True, False):
        res = check_module(cls(shape[1]), shape, train=train)
        assert res.passed and set(res.errors) == {"input", "gamma", "beta"}, str(res)


def test_module_buffers_train_and_eval(xp):
    m = BatchNorm2d(3, momentum=0.5).to_backend()
    assert set(m.params) == {"gamma", "beta"} and set(m.buffers) == {"running_mean", "running_var"}
    assert xp.array_equal(m.params["gamma"], xp.ones(3)) and not m.params["beta"].any()
    assert not m.buffers["running_mean"].any() and xp.array_equal(m.buffers["running_var"], xp.ones(3))
    x = xp.asarray(backend.new_host_rng(7).standard_normal((4, 3, 3, 3)).astype("float32") * 3 + 2)
    out = m.forward(x)
    assert xp.allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    mean = x.mean(axis=(0, 2, 3))
    assert xp.allclose(m.buffers["running_mean"], 0.5 * mean, atol=1e-6)
    assert xp.allclose(m.buffers["running_var"], 0.5 + 0.5 * x.var(axis=(0, 2, 3)) * 36 / 35, atol=1e-5)
    m.eval()
    before = [v.copy() for v in m.buffers.values()]
    out = m.forward(x)
    assert all(xp.array_equal(a, b) for a, b in zip(before, m.buffers.values()))  # eval leaves buffers alone
    rm, rv = m.buffers["running_mean"].reshape(1, 3, 1, 1), m.buffers["running_var"].reshape(1, 3, 1, 1)
    assert xp.allclose(out, (x - rm) / xp.sqrt(rv + 1e-5), atol=1e-5)
    sd = m.state_dict()
    assert set(sd) == {"gamma", "beta", "running_mean", "running_var"}


def test_module_backward_accumulates(xp):
    m = BatchNorm1d(3).to_backend()
    x = xp.asarray(backend.new_host_rng(8).standard_normal((5, 3)))
    m.astype("float64")
    dout = xp.asarray(backend.new_host_rng(9).standard_normal((5, 3)))
    m.zero_grad()
    m.forward(x)
    m.backward(dout)
    g = m.grads["gamma"].copy()
    m.forward(x)
    m.backward(dout)
    assert xp.allclose(m.grads["gamma"], 2 * g)


# --- bad input ------------------------------------------------------------------------------

def test_bad_input_op(xp, check_finite):
    c = xp.ones(3)
    with pytest.raises(ValueError, match=r"batchnorm: expected x to be 2-D or 4-D \(N, C\) or \(N, C, H, W\), got shape \(2, 3, 4\)"):
        batchnorm_forward(xp.ones((2, 3, 4)), c, c, c, c)
    with pytest.raises(ValueError, match=r"batchnorm: channel mismatch: x has 4 channels .* gamma has shape \(3,\), expected \(4,\)"):
        batchnorm_forward(xp.ones((2, 4)), c, c, xp.ones(4), xp.ones(4))
    with pytest.raises(ValueError, match=r"batchnorm: channel mismatch: .* running_var has shape \(3,\)"):
        batchnorm_forward(xp.ones((2, 4)), xp.ones(4), xp.ones(4), xp.ones(4), c)
    with pytest.raises(ValueError, match="batchnorm: expected x to be a floating-point array .* got dtype int64"):
        batchnorm_forward(xp.ones((2, 3), dtype="int64"), c, c, c, c)
    for bad in (float("nan"), float("inf")):
        x = xp.ones((2, 3))
        x[1, 1] = bad
        with pytest.raises(ValueError, match="batchnorm: x contains non-finite values"):
            batchnorm_forward(x, c, c, c, c)
    nan_c = xp.asarray([1.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="batchnorm: gamma contains non-finite values"):
        batchnorm_forward(xp.ones((2, 3)), nan_c, c, c, c)
    with pytest.raises(ValueError, match="batchnorm: running_var contains non-finite values"):
        batchnorm_forward(xp.ones((2, 3)), c, c, c, nan_c, training=False)
    with pytest.raises(ValueError, match=r"batchnorm: training mode needs more than one value per channel.*\(1, 3\)"):
        batchnorm_forward(xp.ones((1, 3)), c, c, c, c, training=True)
    batchnorm_forward(xp.ones((1, 3)), c, c, c, c, training=False)  # fine in eval mode
    with pytest.raises(ValueError, match="batchnorm: momentum must be in"):
        batchnorm_forward(xp.ones((2, 3)), c, c, c, c, momentum=1.5)
    with pytest.raises(ValueError, match="batchnorm: eps must be > 0"):
        batchnorm_forward(xp.ones((2, 3)), c, c, c, c, eps=0)


def test_bad_input_modules(xp):
    with pytest.raises(ValueError, match=r"BatchNorm2d\(16\): expected input with 16 channels, got 8 \(input shape \(2, 8, 4, 4\)\)"):
        BatchNorm2d(16).forward(xp.ones((2, 8, 4, 4), dtype="float32"))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(16\): expected a 4-D input \(N, C, H, W\), got shape \(2, 16\)"):
        BatchNorm2d(16).forward(xp.ones((2, 16), dtype="float32"))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\): expected a 2-D input \(N, C\), got shape \(2, 4, 3, 3\)"):
        BatchNorm1d(4).forward(xp.ones((2, 4, 3, 3), dtype="float32"))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\): expected input with 4 channels, got 5"):
        BatchNorm1d(4).forward(xp.ones((2, 5), dtype="float32"))
    with pytest.raises(ValueError, match="BatchNorm1d: num_features must be an integer >= 1"):
        BatchNorm1d(0)
