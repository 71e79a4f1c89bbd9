"""Properties, finite differences and bad input for the basic ops: linear, flatten, ReLU,
sigmoid, softmax and softmax cross-entropy."""
import math
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import distinct_values, given_settings, shapes

from tinyba2m import backend
from tinyba2m.gradcheck import check_op
from tinyba2m.ops.activations import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward
from tinyba2m.ops.linear import flatten_backward, flatten_forward, linear_backward, linear_forward
from tinyba2m.ops.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward

np = backend.numpy_module


def normal(xp, shape, seed=0, scale=1.0):
    return xp.asarray(backend.new_host_rng(seed).standard_normal(shape) * scale)


def labels(xp, n, k, seed=0):
    return xp.asarray(backend.new_host_rng(seed).integers(0, k, n))


# --- finite differences, float64 ------------------------------------------------------------

def test_finite_differences_linear(xp):
    res = check_op(linear_forward, linear_backward, [normal(xp, (3, 4), 1), normal(xp, (4, 2), 2), normal(xp, (2,), 3)],
                   names=["x", "w", "b"])
    assert res.passed and res.worst < 1e-6, str(res)


def test_finite_differences_flatten(xp):
    res = check_op(flatten_forward, flatten_backward, [normal(xp, (2, 3, 2, 2))], names=["x"])
    assert res.passed and res.worst < 1e-6, str(res)


def test_finite_differences_relu_away_from_kink(xp):
    x = xp.asarray(distinct_values(backend.new_host_rng(1), (3, 4, 5), gap=0.02))  # every |x| >= 0.01 >> h
    res = check_op(relu_forward, relu_backward, [x], names=["x"])
    assert res.passed and res.worst < 1e-6, str(res)


def test_finite_differences_sigmoid(xp):
    res = check_op(sigmoid_forward, sigmoid_backward, [normal(xp, (3, 4), 2, scale=3)], names=["x"])
    assert res.passed and res.worst < 1e-6, str(res)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_finite_differences_softmax(xp, axis):
    res = check_op(softmax_forward, softmax_backward, [normal(xp, (3, 4, 2), 3)], names=["x"], kwargs={"axis": axis})
    assert res.passed and res.worst < 1e-6, str(res)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_finite_differences_cross_entropy(xp, smoothing):
    y = labels(xp, 4, 5)
    res = check_op(lambda z: softmax_cross_entropy_forward(z, y, smoothing), softmax_cross_entropy_backward,
                   [normal(xp, (4, 5), 4, scale=2)], names=["logits"])
    assert res.passed and res.worst < 1e-6, str(res)


# --- properties -----------------------------------------------------------------------------

@given_settings()
@given(shape=shapes(1, 4), seed=st.integers(0, 2**16), data=st.data(), shift=st.floats(-1e3, 1e3))
def test_softmax_sums_to_one_and_ignores_a_constant_shift(xp, shape, seed, data, shift):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = normal(xp, shape, seed, scale=3)
    p, _ = softmax_forward(x, axis)
    assert bool((p > 0).all()) and bool((p <= 1).all())
    assert xp.allclose(p.sum(axis=axis), 1.0, atol=1e-12)
    assert xp.allclose(softmax_forward(x + shift, axis)[0], p, atol=1e-10)


@given_settings()
@given(n=st.integers(1, 5), k=st.integers(2, 6), seed=st.integers(0, 2**16), scale=st.floats(0.1, 30))
def test_cross_entropy_non_negative_and_equals_minus_log_p_true_class(xp, n, k, seed, scale):
    z = normal(xp, (n, k), seed, scale)
    y = labels(xp, n, k, seed)
    loss, _ = softmax_cross_entropy_forward(z, y)
    p, _ = softmax_forward(z, 1)
    want = -float(xp.log(p[xp.arange(n), y]).mean())
    assert float(loss) >= 0.0
    assert float(loss) == pytest.approx(want, rel=1e-9, abs=1e-12)


@given_settings()
@given(n=st.integers(1, 5), k=st.integers(2, 6), seed=st.integers(0, 2**16), eps=st.floats(0.0, 0.9))
def test_label_smoothing_mixes_with_the_uniform_target(xp, n, k, seed, eps):
    z = normal(xp, (n, k), seed, 2)
    y = labels(xp, n, k, seed)
    logp = xp.log(softmax_forward(z, 1)[0])
    want = (1 - eps) * -float(logp[xp.arange(n), y].mean()) + eps * -float(logp.mean(axis=1).mean())
    loss, _ = softmax_cross_entropy_forward(z, y, eps)
    assert float(loss) >= 0.0 and float(loss) == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_stable_for_huge_logits(xp, dtype):
    z = xp.asarray([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4], [2e4, 1e4, 0.0]], dtype=dtype)
    y = xp.asarray([0, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings
        loss, cache = softmax_cross_entropy_forward(z, y)
        dz = softmax_cross_entropy_backward(1.0, cache)
    # -log p: sample 0 ~ 0, sample 1 = 1e4 + log 2, sample 2 = 1e4
    assert float(loss) == pytest.approx((0 + 1e4 + math.log(2) + 1e4) / 3, rel=1e-6)
    assert bool(xp.isfinite(dz).all()) and xp.allclose(dz.sum(axis=1), 0, atol=1e-6)


@given_settings()
@given(shape=shapes(1, 4), seed=st.integers(0, 2**16))
def test_relu_properties_away_from_kinks(xp, shape, seed):
    x = xp.asarray(distinct_values(backend.new_host_rng(seed), shape, gap=0.1))
    out, cache = relu_forward(x)
    assert bool((out >= 0).all()) and xp.array_equal(out[x > 0], x[x > 0]) and not out[x < 0].any()
    dout = normal(xp, shape, seed + 1)
    dx = relu_backward(dout, cache)
    assert xp.array_equal(dx, xp.where(x > 0, dout, 0))


@given_settings()
@given(shape=shapes(1, 3), seed=st.integers(0, 2**16), scale=st.floats(0.1, 1e3))
def test_sigmoid_properties(xp, shape, seed, scale):
    x = normal(xp, shape, seed, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no exp overflow for large |x|
        s, cache = sigmoid_forward(x)
        s_neg, _ = sigmoid_forward(-x)
    assert bool(((s >= 0) & (s <= 1)).all())
    assert xp.allclose(s + s_neg, 1.0, atol=1e-12)
    assert xp.allclose(sigmoid_backward(xp.ones_like(x), cache), s * (1 - s))


@given_settings()
@given(n=st.integers(1, 4), d=st.integers(1, 5), m=st.integers(1, 4), a=st.floats(-3, 3), seed=st.integers(0, 2**16))
def test_linear_matches_matmul_is_linear_and_adjoint(xp, n, d, m, a, seed):
    x1, x2, w, b = normal(xp, (n, d), seed), normal(xp, (n, d), seed + 1), normal(xp, (d, m), seed + 2), normal(xp, (m,), seed + 3)
    out, cache = linear_forward(x1, w, b)
    assert xp.allclose(out, x1 @ w + b)
    lin = lambda x: linear_forward(x, w)[0]  # noqa: E731
    assert xp.allclose(lin(a * x1 + x2), a * lin(x1) + lin(x2))
    y = normal(xp, (n, m), seed + 4)
    dx, dw, db = linear_backward(y, cache)
    assert float((lin(x1) * y).sum()) == pytest.approx(float((x1 * dx).sum()), rel=1e-9, abs=1e-9)
    assert xp.allclose(db, y.sum(axis=0)) and xp.allclose(dw, x1.T @ y)


@given_settings()
@given(shape=shapes(1, 5))
def test_flatten_round_trip(xp, shape):
    x = normal(xp, shape)
    out, cache = flatten_forward(x)
    assert out.shape == (shape[0], int(np.prod(shape[1:])))
    assert xp.array_equal(flatten_backward(out, cache), x)


# --- bad input ------------------------------------------------------------------------------

def test_linear_bad_input(xp, check_finite):
    with pytest.raises(ValueError, match=r"linear: expected x to be 2-D \(N, D\), got shape \(2, 3, 4\)"):
        linear_forward(xp.ones((2, 3, 4)), xp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"linear: x has 3 features but w expects 4"):
        linear_forward(xp.ones((2, 3)), xp.ones((4, 2)))
    with pytest.raises(ValueError, match=r"linear: expected w to be 2-D"):
        linear_forward(xp.ones((2, 3)), xp.ones((3,)))
    with pytest.raises(ValueError, match=r"linear: expected bias of shape \(2,\), got \(3,\)"):
        linear_forward(xp.ones((2, 3)), xp.ones((3, 2)), xp.ones(3))
    with pytest.raises(ValueError, match="linear: expected x to be a floating-point array .* got dtype int64"):
        linear_forward(xp.ones((2, 3), dtype="int64"), xp.ones((3, 2)))
    x = xp.ones((2, 3))
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="linear: x contains non-finite values"):
        linear_forward(x, xp.ones((3, 2)))


@pytest.mark.parametrize("fwd,op", [(relu_forward, "relu"), (sigmoid_forward, "sigmoid"), (softmax_forward, "softmax")])
def test_activations_reject_integers(xp, fwd, op):
    with pytest.raises(ValueError, match=f"{op}: expected x to be a floating-point array .* got dtype int32"):
        fwd(xp.ones((2, 3), dtype="int32"))


def test_softmax_axis_out_of_range(xp):
    with pytest.raises(ValueError, match="softmax: axis 2 is out of range for an input with 2 dimensions"):
        softmax_forward(xp.ones((2, 3)), 2)


def test_flatten_needs_a_batch_axis(xp):
    with pytest.raises(ValueError, match="flatten: expected x to be"):
        flatten_forward(xp.asarray(1.0))


def test_cross_entropy_bad_input(xp, check_finite):
    z = xp.zeros((3, 4))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: expected logits to be 2-D \(N, K\), got shape \(3,\)"):
        softmax_cross_entropy_forward(xp.zeros(3), xp.asarray([0, 1, 2]))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: expected labels of shape \(3,\), got \(2,\)"):
        softmax_cross_entropy_forward(z, xp.asarray([0, 1]))
    with pytest.raises(ValueError, match="softmax_cross_entropy: labels must be an integer array, got dtype float64"):
        softmax_cross_entropy_forward(z, xp.asarray([0.0, 1.0, 2.0]))
    if backend.is_device_array(z):  # no read on a device: a bad label makes the loss NaN
        for bad in ([0, 4, 1], [0, -1, 1]):
            assert math.isnan(float(softmax_cross_entropy_forward(z, xp.asarray(bad))[0]))
    else:
        with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must lie in \[0, 4\), got range \[0, 4\]"):
            softmax_cross_entropy_forward(z, xp.asarray([0, 4, 1]))
        with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must lie in \[0, 4\), got range \[-1, 1\]"):
            softmax_cross_entropy_forward(z, xp.asarray([0, -1, 1]))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: label_smoothing must be in \[0, 1\)"):
        softmax_cross_entropy_forward(z, xp.asarray([0, 1, 2]), 1.0)
    with pytest.raises(ValueError, match="softmax_cross_entropy: expected logits to be a floating-point array"):
        softmax_cross_entropy_forward(xp.zeros((3, 4), dtype="int64"), xp.asarray([0, 1, 2]))
    bad = xp.zeros((3, 4))
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="softmax_cross_entropy: logits contains non-finite values"):
        softmax_cross_entropy_forward(bad, xp.asarray([0, 1, 2]))


@given_settings()
@given(shape=shapes(1, 4), seed=st.integers(0, 2**16))
def test_relu_subgradient_at_zero_is_zero(xp, shape, seed):
    """Exactly at the kink the backward uses the subgradient 0 (checked only there)."""
    x = xp.asarray(distinct_values(backend.new_host_rng(seed), shape, gap=0.1))
    x.reshape(-1)[0] = 0.0
    _, cache = relu_forward(x)
    assert float(relu_backward(xp.ones_like(x), cache).reshape(-1)[0]) == 0.0
