"""Focal loss: value against a direct formula, gamma = 0 is cross-entropy, stable for huge logits,
finite-difference gradients, bad input."""
import pytest

from tinyba2m import backend
from tinyba2m.gradcheck import check_op
from tinyba2m.gradcheck.registry import all_cases
from tinyba2m.nn.focal import FocalLoss
from tinyba2m.ops.focal_loss import focal_loss_backward, focal_loss_forward
from tinyba2m.ops.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward

np = backend.numpy_module


def naive_focal(logits, y, gamma):
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pt = p[np.arange(len(y)), y]
    return float(np.mean(-((1 - pt) ** gamma) * np.log(pt)))


def test_value_matches_direct_formula(xp, rng):
    logits = rng.standard_normal((7, 5))
    y = rng.integers(0, 5, 7)
    for gamma in (0.0, 0.5, 2.0, 3.0):
        loss, _ = focal_loss_forward(xp.asarray(logits), xp.asarray(y), gamma)
        assert float(loss) == pytest.approx(naive_focal(logits, y, gamma), rel=1e-10)


def test_gamma_zero_is_cross_entropy(xp, rng):
    logits = xp.asarray(rng.standard_normal((6, 4)))
    y = xp.asarray(rng.integers(0, 4, 6))
    for eps in (0.0, 0.2):
        fl, fc = focal_loss_forward(logits, y, 0.0, eps)
        ce, cc = softmax_cross_entropy_forward(logits, y, eps)
        assert float(fl) == pytest.approx(float(ce), rel=1e-12)
        diff = backend.to_host(focal_loss_backward(1.0, fc) - softmax_cross_entropy_backward(1.0, cc))
        assert np.abs(diff).max() < 1e-12


def test_down_weights_easy_samples(rng):
    logits = np.array([[8.0, 0.0, 0.0], [0.2, 0.0, 0.0]])
    y = np.array([0, 0])
    fl = [float(focal_loss_forward(logits[i:i + 1], y[i:i + 1], 2.0)[0]) for i in range(2)]
    ce = [float(softmax_cross_entropy_forward(logits[i:i + 1], y[i:i + 1])[0]) for i in range(2)]
    assert fl[0] / ce[0] < 1e-5 < 0.3 < fl[1] / ce[1] < 1.0


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gradient_matches_finite_differences(gamma, eps, rng):
    logits = rng.standard_normal((5, 6)) * 2
    y = rng.integers(0, 6, 5)
    r = check_op(lambda z: focal_loss_forward(z, y, gamma, eps), focal_loss_backward, [logits], name="focal")
    assert r.passed, str(r)


def test_a_wrong_backward_is_caught(rng):
    logits = rng.standard_normal((4, 5))
    y = rng.integers(0, 5, 4)
    wrong = lambda d, c: focal_loss_backward(d, c) * 1.01  # noqa: E731
    assert not check_op(lambda z: focal_loss_forward(z, y, 2.0), wrong, [logits]).passed


def test_registered_case_passes():
    r = all_cases()["focal_loss"]()
    assert r.passed and len(r.errors) == 4, str(r)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_for_huge_logits(xp, dtype):
    logits = xp.asarray([[1e4, 0.0, -1e4], [0.0, 1e4, -1e4], [-3e4, 3e4, 0.0]], dtype=dtype)
    y = xp.asarray([0, 0, 2])
    for gamma in (0.0, 0.5, 2.0):
        loss, cache = focal_loss_forward(logits, y, gamma)
        dx = focal_loss_backward(1.0, cache)
        assert bool(xp.isfinite(loss)) and bool(xp.isfinite(dx).all())
        assert backend.dtype_of(loss) == backend.dtype_of(logits) == backend.dtype_of(dx)
        # sample 0 is certain and right: no gradient; sample 1: right answer pulled up
        assert abs(float(dx[0, 0])) < 1e-6 and float(dx[1, 0]) < 0


def test_does_not_mutate_inputs(rng):
    logits = rng.standard_normal((3, 4)).astype(np.float32)
    y = np.array([1, 2, 3])
    before = logits.copy()
    _, cache = focal_loss_forward(logits, y, 2.0)
    focal_loss_backward(1.0, cache)
    assert np.array_equal(logits, before)


def test_module(rng):
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    loss_fn = FocalLoss(gamma=2.0)
    loss = loss_fn(logits, y)
    assert float(loss) == pytest.approx(naive_focal(logits.astype(np.float64), y, 2.0), rel=1e-5)
    assert loss_fn.backward().shape == (4, 3)


@pytest.mark.parametrize("gamma", [-1.0, float("nan"), float("inf")])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="focal_loss: gamma"):
        focal_loss_forward(np.zeros((2, 3)), np.array([0, 1]), gamma)
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma)


def test_bad_labels_and_logits(check_finite):
    with pytest.raises(ValueError, match=r"focal_loss: labels must lie in \[0, 3\)"):
        focal_loss_forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="focal_loss: expected logits to be 2-D"):
        focal_loss_forward(np.zeros((2, 3, 1)), np.array([0, 1]))
    with pytest.raises(ValueError, match="focal_loss: logits contains non-finite"):
        focal_loss_forward(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        focal_loss_forward(np.zeros((2, 3)), np.array([0, 1]), 2.0, 1.0)
