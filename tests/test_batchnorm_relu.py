"""The fused batch norm + ReLU op pair (ops/batchnorm.py): the same numbers as batch norm then
ReLU, forward and backward, train and eval; its own finite-difference check; no input mutated;
results independent of the channel chunks and host threads; the module's state dict; and the
ResNet blocks that use it."""
import numpy as np
import pytest

from tinyba2m import backend, hostpool
from tinyba2m.gradcheck import check_module, check_op
from tinyba2m.gradcheck.cases.core import kink_free_bn_input
from tinyba2m.nn import BatchNorm2d, BatchNormReLU2d
from tinyba2m.ops import batchnorm as bn_ops
from tinyba2m.ops.activations import relu_backward, relu_forward
from tinyba2m.ops.batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_relu_backward, batchnorm_relu_forward
from tinyba2m.models import build_model


def operands(xp, shape, dtype, seed=0):
    r = backend.new_host_rng(seed)
    c = shape[1]
    cast = lambda a: xp.asarray(a).astype(dtype)
    return (cast(r.standard_normal(shape) * 2 + 1), cast(1 + 0.3 * r.standard_normal(c)), cast(0.5 * r.standard_normal(c)),
            cast(r.standard_normal(c)), cast(r.uniform(0.5, 2.0, c)), cast(r.standard_normal(shape)))


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 5, 1, 3), (6, 4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_equals_batchnorm_then_relu(xp, shape, training, dtype):
    x, g, b, rm, rv, dout = operands(xp, shape, dtype)
    y, c1 = batchnorm_forward(x, g, b, rm, rv, training=training)
    want, c2 = relu_forward(y)
    got, cache = batchnorm_relu_forward(x, g, b, rm, rv, training=training)
    assert got.dtype == x.dtype and got.shape == x.shape
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert xp.allclose(got, want, rtol=tol, atol=tol)
    if training:
        assert xp.allclose(cache["running_mean"], c1["running_mean"], rtol=tol, atol=tol)
        assert xp.allclose(cache["running_var"], c1["running_var"], rtol=tol, atol=tol)
    want_grads = batchnorm_backward(relu_backward(dout, c2), c1)
    got_grads = batchnorm_relu_backward(dout, cache)
    for a, w in zip(got_grads, want_grads):
        assert a.dtype == w.dtype and xp.allclose(a, w, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("training", [True, False])
def test_fused_finite_differences(xp, training):
    shape = (3, 2, 2, 3)
    x0, g, b, rm, rv, _ = operands(xp, shape, "float64", seed=3)
    x = kink_free_bn_input(backend.new_host_rng(7), shape, g, b, rm, rv, training)
    res = check_op(lambda x, g, b: batchnorm_relu_forward(x, g, b, rm, rv, training=training), batchnorm_relu_backward,
                   [x, g, b], names=["x", "gamma", "beta"], name="batchnorm_relu")
    assert res.passed, res


@pytest.mark.parametrize("training", [True, False])
def test_fused_module_finite_differences(xp, training):
    m = BatchNormReLU2d(3)
    make = lambda rng, shape: kink_free_bn_input(rng, shape, m.params["gamma"], m.params["beta"],
                                                 m.buffers["running_mean"], m.buffers["running_var"], training)
    assert check_module(m, (3, 3, 2, 2), train=training, make_input=make).passed


@pytest.mark.parametrize("training", [True, False])
def test_fused_pair_never_mutates_its_inputs(xp, training):
    x, g, b, rm, rv, dout = operands(xp, (3, 4, 3, 3), "float64")
    before = [a.copy() for a in (x, g, b, rm, rv, dout)]
    out, cache = batchnorm_relu_forward(x, g, b, rm, rv, training=training)
    kept = out.copy()
    batchnorm_relu_backward(dout, cache)
    batchnorm_relu_backward(dout, cache)                 # twice: the cache is not consumed either
    assert all(xp.array_equal(a, w) for a, w in zip((x, g, b, rm, rv, dout), before))
    assert xp.array_equal(out, kept)


def test_results_do_not_depend_on_the_chunks_or_threads(monkeypatch):
    """One sample per chunk on 1 and 3 threads gives the numbers of one whole-array chunk."""
    monkeypatch.setattr(hostpool, "_host_threads", hostpool.host_threads())
    monkeypatch.setattr(hostpool, "_host_pool", None)
    monkeypatch.setattr(bn_ops, "POOL_MIN_BYTES", 0)
    x, g, b, rm, rv, dout = operands(np, (4, 5, 3, 3), "float64")
    runs = []
    for budget, threads in ((10 ** 9, 1), (1, 1), (1, 3)):
        monkeypatch.setattr(bn_ops, "CHUNK_BYTES", budget)
        hostpool.set_host_threads(threads)
        assert len(bn_ops.sample_chunks(x)) == (threads if budget > 1 else 4)
        for fwd, bwd in ((batchnorm_forward, batchnorm_backward), (batchnorm_relu_forward, batchnorm_relu_backward)):
            out, cache = fwd(x, g, b, rm, rv, training=True)
            runs.append((budget, threads, fwd.__name__, (out, cache["running_mean"], cache["running_var"])
                         + bwd(dout, cache)))
    base = {name: arrays for budget, _, name, arrays in runs if budget > 1}
    for _, _, name, arrays in runs:
        for a, w in zip(arrays, base[name]):
            assert np.allclose(a, w, rtol=1e-12, atol=1e-12)


def test_module_has_the_state_of_batchnorm2d(xp):
    fused, plain = BatchNormReLU2d(3), BatchNorm2d(3)
    assert list(fused.state_dict()) == list(plain.state_dict())
    x = xp.asarray(backend.new_host_rng(1).standard_normal((4, 3, 2, 2))).astype(backend.float32)
    plain.load_state_dict(fused.state_dict())
    out = fused.forward(x)
    assert xp.allclose(out, xp.maximum(plain.forward(x), 0), atol=1e-6)
    assert xp.allclose(fused.buffers["running_mean"], plain.buffers["running_mean"], atol=1e-7)


def test_resnet_blocks_use_the_fused_pair_and_keep_their_state_names():
    model = build_model("resnet20", "none")
    kinds = {name: type(m).__name__ for name, m in model.named_modules()}
    assert kinds["stem_bn"] == "BatchNormReLU2d"
    assert sum(k == "BatchNormReLU2d" for k in kinds.values()) == 1 + 9
    names = list(model.state_dict())
    assert "stem_bn.gamma" in names and not any("relu" in n for n in names)


def test_relu_chunks_do_not_change_the_numbers(monkeypatch):
    from tinyba2m.ops import activations
    monkeypatch.setattr(hostpool, "_host_threads", hostpool.host_threads())
    monkeypatch.setattr(hostpool, "_host_pool", None)
    x = np.asarray(backend.new_host_rng(2).standard_normal((5, 3, 4)))
    dout = np.cos(x)
    monkeypatch.setattr(activations, "CHUNK_BYTES", 1)
    monkeypatch.setattr(activations, "POOL_MIN_BYTES", 0)
    hostpool.set_host_threads(3)
    out, mask = relu_forward(x)
    assert np.array_equal(out, np.maximum(x, 0)) and np.array_equal(mask, x > 0)
    assert np.array_equal(relu_backward(dout, mask), dout * (x > 0))
    assert np.array_equal(relu_forward(np.float64(-2.0))[0], 0.0)


def kernel_stand_ins(xp):
    """Array-module versions of the two CUDA kernels of ops.batchnorm._device_kernels, with their
    signatures (on cupysim they run under CuPy's rules)."""
    def forward(x, mu, inv_std, gamma, beta, xhat, out):
        xhat[...] = (x - mu) * inv_std
        out[...] = xp.maximum(gamma * xhat + beta, 0)

    def backward(dout, out, xhat, scale, k0, k1, dx):
        dx[...] = scale * xp.where(out > 0, dout, 0) - k0 - xhat * k1
    return forward, backward


@pytest.mark.parametrize("training", [True, False])
def test_the_device_kernel_call_sites(xp, monkeypatch, training):
    """The fused pair's GPU path, with stand-ins for its kernels, gives the host path's numbers."""
    x, g, b, rm, rv, dout = operands(xp, (4, 3, 2, 5), "float64", seed=5)
    want = batchnorm_relu_forward(x, g, b, rm, rv, training=training)
    want = (want[0],) + batchnorm_relu_backward(dout, want[1])
    monkeypatch.setattr(bn_ops, "_device_kernels", kernel_stand_ins)
    got = batchnorm_relu_forward(x, g, b, rm, rv, training=training)
    got = (got[0],) + batchnorm_relu_backward(dout, got[1])
    for a, w in zip(got, want):
        assert xp.allclose(a, w, rtol=1e-12, atol=1e-12)


def test_small_arrays_are_one_chunk():
    assert bn_ops.sample_chunks(np.zeros((8, 4, 3, 3))) == [slice(0, 8)]
    assert len(bn_ops.sample_chunks(np.zeros((128, 16, 32, 32), dtype=np.float32))) >= hostpool.host_threads()


def test_no_device_kernels_on_numpy_or_cupysim():
    """Only real CuPy compiles the CUDA kernels; the simulated device runs the plain passes."""
    previous = backend.name
    try:
        assert bn_ops._device_kernels(np) is None
        assert bn_ops._device_kernels(backend.use_backend("cupysim")) is None
    finally:
        backend.use_backend(previous)
