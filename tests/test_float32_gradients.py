"""Gradients computed in float32 against the same computation in float64, from the same
float32-rounded inputs: conv, batch norm, pooling, softmax, softmax cross-entropy, the three
BA²M branches, CBAM and BAM. A backward pass that subtracts nearly equal numbers shows up here as an error far
above float32's rounding (eps = 1.2e-7); the errors measured when these tests were written were
3e-8 to 3e-6. Relative errors are ``||g32 - g64|| / ||g64||`` per gradient; for parameters whose
exact gradient is zero (a bias feeding a batch norm) the float32 gradient must be ~0.

Softmax and cross-entropy are compared with a float64 truth that has no cancellation either
(``dx_i = p_i sum_j p_j (dout_i - dout_j)`` and ``p_t - 1 = -sum_{j != t} p_j``), since the
textbook forms lose accuracy on confident rows in float64 too.
"""
import numpy as np
import pytest

from tinyba2m import backend
from tinyba2m.attention import BAM, CBAM
from tinyba2m.attention.branches import ChannelBranch, GlobalSpatialBranch, LocalSpatialBranch
from tinyba2m.ops import activations, batchnorm, conv, losses, pooling


def rel(a, b) -> float:
    a, b = np.asarray(backend.to_host(a), np.float64), np.asarray(backend.to_host(b), np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def both(xp, arrays, ints=()):
    """The arrays rounded to float32, and the same values in float64 (integer arrays kept)."""
    f32 = [a if i in ints else a.astype(np.float32) for i, a in enumerate(arrays)]
    return ([xp.asarray(a) for a in f32],
            [xp.asarray(a if i in ints else a.astype(np.float64)) for i, a in enumerate(f32)])


def op_errors(xp, forward, backward, arrays, kwargs=None, ints=(), seed=1):
    kwargs = kwargs or {}
    a32, a64 = both(xp, arrays, ints)
    out32, c32 = forward(*a32, **kwargs)
    out64, c64 = forward(*a64, **kwargs)
    d = backend.new_host_rng(seed).standard_normal(out64.shape)
    g32, g64 = backward(xp.asarray(d.astype(np.float32)), c32), backward(xp.asarray(d), c64)
    g32, g64 = (g32 if isinstance(g32, tuple) else (g32,)), (g64 if isinstance(g64, tuple) else (g64,))
    assert all(a is None or a.dtype == xp.float32 for a in g32)
    return [rel(a, b) for a, b in zip(g32, g64) if a is not None]


CONVS = {"3x3 pad 1": {"padding": 1}, "3x3 stride 2": {"stride": 2}, "3x3 dilation 2": {"padding": 2, "dilation": 2},
         "1x1": {}}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv2d(xp, name):
    r = backend.new_host_rng(0)
    k = 1 if name == "1x1" else 3
    arrays = [r.standard_normal((4, 8, 9, 9)), 0.2 * r.standard_normal((16, 8, k, k)), r.standard_normal(16)]
    errs = op_errors(xp, conv.conv2d_forward, conv.conv2d_backward, arrays, CONVS[name])
    assert max(errs) < 1e-5, f"conv2d {name}: (dx, dw, db) errors {errs}"


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("offset", [0.0, 10.0, 100.0])
def test_batchnorm(xp, training, offset):
    """Inputs with a mean far from zero (offset) relative to their spread (1)."""
    r = backend.new_host_rng(0)
    c = 8
    arrays = [offset + r.standard_normal((4, c, 6, 6)), 1 + 0.1 * r.standard_normal(c), r.standard_normal(c),
              offset + 0.1 * r.standard_normal(c), r.uniform(0.5, 2, c)]
    errs = op_errors(xp, batchnorm.batchnorm_forward, batchnorm.batchnorm_backward, arrays, {"training": training})
    assert max(errs) < 1e-5, f"batchnorm (dx, dgamma, dbeta) errors {errs}"


@pytest.mark.parametrize("kind", ["max", "avg", "global"])
def test_pooling(xp, kind):
    x = backend.new_host_rng(0).standard_normal((4, 8, 9, 9))
    fwd, bwd, kw = {"max": (pooling.max_pool2d_forward, pooling.max_pool2d_backward, {"kernel_size": 3, "stride": 2, "padding": 1}),
                    "avg": (pooling.avg_pool2d_forward, pooling.avg_pool2d_backward, {"kernel_size": 3, "stride": 2, "padding": 1}),
                    "global": (pooling.global_avg_pool_forward, pooling.global_avg_pool_backward, {})}[kind]
    errs = op_errors(xp, fwd, bwd, [x], kw)
    assert max(errs) < 1e-6, f"{kind} pooling dx error {errs}"


def exact_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0, 30.0])
def test_softmax(xp, scale):
    r = backend.new_host_rng(0)
    z = (scale * r.standard_normal((16, 10))).astype(np.float32)
    d = r.standard_normal((16, 10)).astype(np.float32)
    p = exact_softmax(z.astype(np.float64))
    truth = p * np.einsum("nj,nij->ni", p, d[:, :, None].astype(np.float64) - d[:, None, :])
    _, cache = activations.softmax_forward(xp.asarray(z), axis=1)
    err = rel(activations.softmax_backward(xp.asarray(d), cache), truth)
    assert err < 1e-5, f"softmax at logit scale {scale}: dx error {err:.1e}"


@pytest.mark.parametrize("labels", ["argmax", "random"])
@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0, 30.0])
def test_softmax_cross_entropy(xp, scale, labels):
    r = backend.new_host_rng(0)
    z = (scale * r.standard_normal((16, 10))).astype(np.float32)
    y = z.argmax(axis=1) if labels == "argmax" else r.integers(0, 10, 16)
    p = exact_softmax(z.astype(np.float64))
    onehot = np.eye(10)[y]
    truth = np.where(onehot > 0, -(p * (1 - onehot)).sum(axis=1, keepdims=True), p) / 16
    _, cache = losses.softmax_cross_entropy_forward(xp.asarray(z), xp.asarray(y))
    err = rel(losses.softmax_cross_entropy_backward(1.0, cache), truth)
    assert err < 1e-5, f"cross-entropy at logit scale {scale}, {labels} labels: dlogits error {err:.1e}"


# the three BA²M branches, and the two baselines built from the same kinds of layers
BRANCHES = {"channel": ChannelBranch, "local": LocalSpatialBranch, "global": GlobalSpatialBranch, "cbam": CBAM, "bam": BAM}


@pytest.mark.parametrize("scale", [1.0, 3.0, 30.0])
@pytest.mark.parametrize("name", sorted(BRANCHES))
def test_branch(xp, name, scale):
    """The branch in float32 and in float64 (same initial weights, same float32 input). At input
    scale s the attention scores reach ~s^2 * 20; float32 scores then carry an error ~eps * s^2,
    hence the tolerance 1e-5 * s (met with a margin of 5-100x)."""
    modules = []
    for dtype in ("float32", "float64"):
        backend.seed(0)
        modules.append(BRANCHES[name](16).astype(dtype))
    r = backend.new_host_rng(1)
    x = (scale * r.standard_normal((4, 16, 6, 6))).astype(np.float32)
    outs = [modules[0].forward(xp.asarray(x)), modules[1].forward(xp.asarray(x.astype(np.float64)))]
    d = r.standard_normal(outs[1].shape)
    dx32, dx64 = modules[0].backward(xp.asarray(d.astype(np.float32))), modules[1].backward(xp.asarray(d))
    tol = 1e-5 * scale
    assert dx32.dtype == xp.float32
    assert rel(dx32, dx64) < tol, f"{name} branch, input scale {scale}: dx error {rel(dx32, dx64):.1e}"
    grads32 = {q: m.grads[k] for q, m, k in modules[0].named_parameters()}
    grads64 = {q: m.grads[k] for q, m, k in modules[1].named_parameters()}
    scale64 = max(float(np.abs(backend.to_host(g)).max()) for g in grads64.values())
    for q in grads64:
        g32, g64 = backend.to_host(grads32[q]).astype(np.float64), backend.to_host(grads64[q])
        if float(np.abs(g64).max()) < 1e-9 * scale64:      # an exactly-zero gradient (bias before a BN)
            assert float(np.abs(g32).max()) < 1e-3 * scale64, f"{name} branch: the zero gradient of {q} is not ~0"
            continue
        err = rel(g32, g64)
        assert err < tol, f"{name} branch, input scale {scale}: gradient of {q} off by {err:.1e}"
