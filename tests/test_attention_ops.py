"""The BA²M op pairs: non-local attention, SAR fusion and the two weightings — against plain
references, finite differences, the tie rule, memory (no broadcast, one attention matrix),
contracts (no mutation, float32 stays float32) and bad input."""
import tracemalloc

import pytest

from tinyba2m import backend, hostpool
from tinyba2m.attention.nonlocal_attention import (nonlocal_attention_backward, nonlocal_attention_backward_reference,
                                                   nonlocal_attention_forward)
from tinyba2m.attention.sar import count_below, sar_fusion_backward, sar_fusion_forward
from tinyba2m.attention.weighting import (batch_softmax_weighting_backward, batch_softmax_weighting_forward,
                                          sigmoid_weighting_backward, sigmoid_weighting_forward)
from tinyba2m.gradcheck import check_op, numerical_gradient

np = backend.numpy_module
SUBSETS = [(0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,)]


def arr(xp, rng, *shape, dtype="float64"):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


def host(a):
    return backend.to_host(a)


# -- non-local attention -------------------------------------------------------------------------
def plain_attention(theta, phi, g):
    """softmax(theta^T phi) g^T on the host, with an explicit normalised P."""
    s = np.einsum("nkq,nkm->nqm", host(theta), host(phi))
    p = np.exp(s - s.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    return np.einsum("nqm,nvm->nqv", p, host(g))


@pytest.mark.parametrize("v", [1, 3])
def test_nonlocal_forward_matches_plain_softmax(xp, rng, v):
    theta, phi, g = arr(xp, rng, 2, 4, 10), arr(xp, rng, 2, 4, 6), arr(xp, rng, 2, v, 6)
    out, _ = nonlocal_attention_forward(theta, phi, g)
    assert out.shape == (2, 10, v)
    assert np.allclose(host(out), plain_attention(theta, phi, g), atol=1e-12)


@pytest.mark.parametrize("v", [1, 3])
def test_nonlocal_gradients_finite_differences(xp, rng, v):
    ins = [arr(xp, rng, 3, 4, 12), arr(xp, rng, 3, 4, 5), arr(xp, rng, 3, v, 5)]
    r = check_op(nonlocal_attention_forward, nonlocal_attention_backward, ins, names=["theta", "phi", "g"], method="full")
    assert r.passed, str(r)


def test_nonlocal_fast_backward_equals_textbook_backward(xp, rng):
    for v in (1, 2):
        out, cache = nonlocal_attention_forward(arr(xp, rng, 2, 3, 9), arr(xp, rng, 2, 3, 4), arr(xp, rng, 2, v, 4))
        dout = arr(xp, rng, *out.shape)
        for fast, ref in zip(nonlocal_attention_backward(dout, cache), nonlocal_attention_backward_reference(dout, cache)):
            assert np.allclose(host(fast), host(ref), atol=1e-12)


def test_nonlocal_large_scores_are_stable(xp, rng):
    theta, phi, g = 40 * arr(xp, rng, 1, 4, 8), 40 * arr(xp, rng, 1, 4, 5), arr(xp, rng, 1, 1, 5)
    out, cache = nonlocal_attention_forward(theta, phi, g)
    grads = nonlocal_attention_backward(xp.ones_like(out), cache)
    assert all(bool(xp.isfinite(a).all()) for a in (out,) + tuple(grads))
    assert np.allclose(host(out), plain_attention(theta, phi, g))


def test_nonlocal_rows_with_a_large_spread_are_exact(xp, rng):
    """Rows whose scores spread far (x40) beside ordinary rows in one batch: values and gradients
    stay exact, and every row is shifted by its maximum (row sums in [1, M])."""
    theta, phi, g = arr(xp, rng, 2, 4, 6), arr(xp, rng, 2, 4, 5), arr(xp, rng, 2, 2, 5)
    theta[0, :, 2] *= 40.0
    theta[1, :, 4] *= 40.0
    out, cache = nonlocal_attention_forward(theta, phi, g)
    assert np.allclose(host(out), plain_attention(theta, phi, g), atol=1e-12)
    z = host(cache[4])
    assert z.min() >= 1.0 and z.max() <= 5.0                    # E = exp(S - max S): largest term 1
    r = check_op(nonlocal_attention_forward, nonlocal_attention_backward, [theta, phi, g], method="full")
    assert r.passed, str(r)


def test_nonlocal_keeps_one_attention_matrix_and_float32(xp, rng):
    theta, phi, g = arr(xp, rng, 2, 4, 64, dtype="float32"), arr(xp, rng, 2, 4, 16, dtype="float32"), arr(xp, rng, 2, 1, 16, dtype="float32")
    copies = [a.copy() for a in (theta, phi, g)]
    out, cache = nonlocal_attention_forward(theta, phi, g)
    big = [a for a in cache if hasattr(a, "shape") and a.size >= 2 * 64 * 16]
    assert len(big) == 1                                   # exactly one (N, Q, M) array in the cache
    grads = nonlocal_attention_backward(xp.ones_like(out), cache)
    assert out.dtype == xp.float32 and all(d.dtype == xp.float32 for d in grads)
    assert all(bool((a == b).all()) for a, b in zip((theta, phi, g), copies))


def test_nonlocal_peak_memory_is_about_one_attention_matrix():
    rng = backend.new_host_rng(0)
    n, k, q, m = 4, 4, 1024, 256
    theta, phi, g = (rng.standard_normal(s).astype("float32") for s in ((n, k, q), (n, k, m), (n, 1, m)))
    one = n * q * m * 4
    tracemalloc.start()
    out, cache = nonlocal_attention_forward(theta, phi, g)
    _, peak_fwd = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    nonlocal_attention_backward(np.ones_like(out), cache)
    _, peak_bwd = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak_fwd < 1.2 * one                            # the scores are exponentiated in place
    assert peak_bwd - base < 0.2 * one                     # backward builds no (N, Q, M) array


def test_nonlocal_bad_input_is_clear(xp, rng):
    with pytest.raises(ValueError, match="nonlocal_attention: expected theta to be 3-D"):
        nonlocal_attention_forward(arr(xp, rng, 2, 4), arr(xp, rng, 2, 4, 5), arr(xp, rng, 2, 1, 5))
    with pytest.raises(ValueError, match=r"nonlocal_attention: phi must be \(N, K, M\)"):
        nonlocal_attention_forward(arr(xp, rng, 2, 4, 6), arr(xp, rng, 2, 3, 5), arr(xp, rng, 2, 1, 5))
    with pytest.raises(ValueError, match=r"nonlocal_attention: g must be"):
        nonlocal_attention_forward(arr(xp, rng, 2, 4, 6), arr(xp, rng, 2, 4, 5), arr(xp, rng, 2, 1, 4))


# -- SAR fusion ----------------------------------------------------------------------------------
# (fast SAR == broadcast reference, with ties: test_attention_properties.py)
def test_sar_tie_rule_routes_to_first_branch(xp):
    one = xp.ones
    # all three equal: channel wins everything
    g = sar_fusion_backward(xp.ones(1), sar_fusion_forward(one((1, 2)), one((1, 2, 2)), one((1, 2, 2)))[1])
    assert host(g[0]).tolist() == [[0.5, 0.5]] and not host(g[1]).any() and not host(g[2]).any()
    # LS == GS above the channels: LS wins
    g = sar_fusion_backward(xp.ones(1), sar_fusion_forward(xp.zeros((1, 2)), one((1, 1, 2)), one((1, 1, 2)))[1])
    assert not host(g[0]).any() and host(g[1]).tolist() == [[[0.5, 0.5]]] and not host(g[2]).any()
    # a channel equal to the spatial value beats it; the smaller channel loses
    a, cache = sar_fusion_forward(xp.asarray([[1.0, 0.0]]), None, xp.asarray([[[1.0]]]))
    assert float(a[0]) == 1.0
    dc, _, dgs = sar_fusion_backward(xp.ones(1), cache)
    assert host(dc).tolist() == [[0.5, 0.0]] and host(dgs).tolist() == [[[0.5]]]


@pytest.mark.parametrize("keep", SUBSETS)
def test_sar_gradients_finite_differences(xp, rng, keep):
    maps = [arr(xp, rng, 3, 6), arr(xp, rng, 3, 4, 3), arr(xp, rng, 3, 4, 3)]
    used = [maps[i] for i in keep]

    def fwd(*arrays):
        full = [None, None, None]
        for i, a in zip(keep, arrays):
            full[i] = a
        return sar_fusion_forward(*full)

    def bwd(da, cache):
        grads = sar_fusion_backward(da, cache)
        return tuple(grads[i] for i in keep)

    r = check_op(fwd, bwd, used, method="full")
    assert r.passed, str(r)


def test_count_below_is_a_batched_left_search(xp, rng):
    for c in (1, 2, 3, 7, 8, 16):
        rows = np.sort(rng.integers(-3, 4, (4, c)).astype("float64"), axis=1)
        vals = rng.integers(-4, 5, (4, 9)).astype("float64")
        got = host(count_below(xp.asarray(rows), xp.asarray(vals)))
        want = np.stack([np.searchsorted(rows[i], vals[i], side="left") for i in range(4)])
        assert (got == want).all()


def test_sar_never_builds_the_broadcast():
    rng = backend.new_host_rng(0)
    n, c, h, w = 2, 256, 64, 64
    a_c, a_ls, a_gs = rng.standard_normal((n, c)), rng.standard_normal((n, h, w)), rng.standard_normal((n, h, w))
    broadcast = n * c * h * w * 8
    tracemalloc.start()
    a, cache = sar_fusion_forward(a_c, a_ls, a_gs)
    sar_fusion_backward(np.ones(n), cache)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < broadcast / 10


def test_sar_float32_and_no_mutation(xp, rng):
    maps = [arr(xp, rng, 2, 5, dtype="float32"), arr(xp, rng, 2, 3, 3, dtype="float32"), arr(xp, rng, 2, 3, 3, dtype="float32")]
    copies = [m.copy() for m in maps]
    a, cache = sar_fusion_forward(*maps)
    grads = sar_fusion_backward(xp.ones(2, dtype=xp.float32), cache)
    assert a.dtype == xp.float32 and all(g.dtype == xp.float32 for g in grads)
    assert all(bool((m == c).all()) for m, c in zip(maps, copies))


def test_sar_bad_input_is_clear(xp, rng):
    with pytest.raises(ValueError, match="sar_fusion: needs at least one branch map"):
        sar_fusion_forward(None, None, None)
    with pytest.raises(ValueError, match=r"sar_fusion: expected a_c to be 2-D \(N, C\)"):
        sar_fusion_forward(arr(xp, rng, 2, 3, 1), None, None)
    with pytest.raises(ValueError, match="sar_fusion: a_ls has batch size 3 but the other maps have 2"):
        sar_fusion_forward(arr(xp, rng, 2, 3), arr(xp, rng, 3, 2, 2), None)
    with pytest.raises(ValueError, match="sar_fusion: a_ls and a_gs must have the same"):
        sar_fusion_forward(None, arr(xp, rng, 2, 2, 2), arr(xp, rng, 2, 2, 3))


# -- weighting -----------------------------------------------------------------------------------
def weight_jacobian(forward, a, tau, h=1e-6):
    """dw/da by central differences, the weights read from the cache (``cache[1]``)."""
    xp = backend.array_module(a)
    n = a.shape[0]
    ones = xp.ones((n, 1))
    jac = np.zeros((n, n))
    for j in range(n):
        e = xp.zeros(n)
        e[j] = h
        jac[:, j] = (host(forward(ones, a + e, tau)[1][1]) - host(forward(ones, a - e, tau)[1][1])) / (2 * h)
    return jac


@pytest.mark.parametrize("tau", [1.0, 0.5, 3.0])
def test_batch_softmax_weighting_finite_differences(xp, rng, tau):
    r = check_op(batch_softmax_weighting_forward, batch_softmax_weighting_backward, [arr(xp, rng, 4, 2, 3, 3), arr(xp, rng, 4)],
                 names=["x", "a"], kwargs={"temperature": tau}, method="full")
    assert r.passed, str(r)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_batch_softmax_jacobian_is_the_derived_one(xp, rng, tau):
    a = arr(xp, rng, 5)
    _, (_, w, _) = batch_softmax_weighting_forward(xp.ones((5, 1)), a, tau)
    w = host(w)
    derived = (w[:, None] / tau) * (np.eye(5) - w[None, :] / 5)
    numeric = weight_jacobian(batch_softmax_weighting_forward, a, tau)
    assert np.allclose(numeric, derived, atol=1e-8)
    off = derived[~np.eye(5, dtype=bool)]
    assert np.abs(off).min() > 1e-4                        # every pair of samples is coupled


def test_batch_softmax_cross_sample_gradient_alone(xp, rng):
    """The gradient reaching a_j and X_j from the loss on sample i only (i != j)."""
    x, a = arr(xp, rng, 3, 2, 2, 2), arr(xp, rng, 3)
    g = arr(xp, rng, 3, 2, 2, 2)
    mask = xp.zeros((3, 1, 1, 1))
    mask[0] = 1.0                                          # loss = sum(G * Y) on sample 0 only
    y, cache = batch_softmax_weighting_forward(x, a)
    dx, da = batch_softmax_weighting_backward(g * mask, cache)
    num_da = numerical_gradient(lambda av: batch_softmax_weighting_forward(x, av)[0], a.copy(), g * mask)
    assert np.allclose(host(da), host(num_da), atol=1e-8)
    assert float(abs(da[1:]).min()) > 1e-4                 # samples 1 and 2 feel sample 0's loss
    assert not bool(dx[1:].any())                          # the direct path stays in sample 0


def test_weights_mean_one_shift_invariance_and_batch_of_one(xp, rng):
    a = arr(xp, rng, 6)
    x = arr(xp, rng, 6, 3)
    _, (_, w, _) = batch_softmax_weighting_forward(x, a, 0.7)
    _, (_, w2, _) = batch_softmax_weighting_forward(x, a + 12.5, 0.7)
    assert abs(float(w.mean()) - 1.0) < 1e-12
    assert np.allclose(host(w), host(w2), atol=1e-12)
    x1 = arr(xp, rng, 1, 2, 3, 3, dtype="float32")
    y1, (_, w1, _) = batch_softmax_weighting_forward(x1, xp.asarray([37.0], dtype=xp.float32))
    assert float(w1[0]) == 1.0 and bool((y1 == x1).all())
    _, da = batch_softmax_weighting_backward(xp.ones_like(x1), (x1, w1, 1.0))
    assert float(da[0]) == 0.0


def test_sigmoid_weighting_is_per_sample(xp, rng):
    r = check_op(sigmoid_weighting_forward, sigmoid_weighting_backward, [arr(xp, rng, 4, 2, 3), arr(xp, rng, 4)],
                 names=["x", "a"], kwargs={"temperature": 0.5}, method="full")
    assert r.passed, str(r)
    jac = weight_jacobian(sigmoid_weighting_forward, arr(xp, rng, 4), 0.5)
    assert np.abs(jac[~np.eye(4, dtype=bool)]).max() == 0.0
    _, (_, w0, _) = sigmoid_weighting_forward(xp.ones((3, 1)), xp.zeros(3))
    assert host(w0).tolist() == [1.0, 1.0, 1.0]            # w = 2 sigmoid(0) = 1


def test_weighting_float32_no_mutation_and_bad_input(xp, rng):
    for fwd, bwd in ((batch_softmax_weighting_forward, batch_softmax_weighting_backward),
                     (sigmoid_weighting_forward, sigmoid_weighting_backward)):
        x, a = arr(xp, rng, 3, 2, 2, 2, dtype="float32"), arr(xp, rng, 3, dtype="float32")
        xc, ac = x.copy(), a.copy()
        y, cache = fwd(x, a)
        dx, da = bwd(xp.ones_like(y), cache)
        assert y.dtype == dx.dtype == da.dtype == xp.float32
        assert bool((x == xc).all()) and bool((a == ac).all())
    with pytest.raises(ValueError, match="batch_softmax_weighting: a has 2 entries but x has batch size 3"):
        batch_softmax_weighting_forward(arr(xp, rng, 3, 2), arr(xp, rng, 2))
    with pytest.raises(ValueError, match="sigmoid_weighting: temperature must be > 0"):
        sigmoid_weighting_forward(arr(xp, rng, 3, 2), arr(xp, rng, 3), 0.0)
    with pytest.raises(ValueError, match=r"batch_softmax_weighting: expected a to be 1-D \(N,\)"):
        batch_softmax_weighting_forward(arr(xp, rng, 3, 2), arr(xp, rng, 3, 1))


def test_wide_spread_scores_without_warnings(xp):
    """Scores with a spread far above exp's float32 range: finite result, no overflow warning."""
    import warnings

    from tinyba2m.attention.nonlocal_attention import unnormalised_attention
    rng = backend.new_host_rng(0)
    theta = xp.asarray(rng.standard_normal((2, 4, 16)).astype("float32") * 30)
    phi = xp.asarray(rng.standard_normal((2, 4, 8)).astype("float32") * 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = unnormalised_attention(theta, phi)
        z = e.sum(axis=2)
    assert bool(xp.isfinite(e).all()) and bool(xp.isfinite(z).all())
    # every exp finite but the row sum overflows float32 (2 x e^88.6 > 3.4e38)
    row = xp.asarray([[[88.6, 88.6, -177.2]]], dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e1 = unnormalised_attention(xp.ones((1, 1, 2), dtype="float32"), row)
        z1 = e1.sum(axis=2)
    assert xp.allclose(e1 / z1[:, :, None], xp.asarray([0.5, 0.5, 0.0], dtype="float32"))
    p = e / z[:, :, None]
    exact = xp.matmul(theta.transpose(0, 2, 1).astype("float64"), phi.astype("float64"))
    exact = xp.exp(exact - exact.max(axis=2, keepdims=True))
    assert xp.allclose(p, exact / exact.sum(axis=2, keepdims=True), atol=1e-5)


def test_attention_matrix_has_no_subnormal_entries_and_stays_exact(xp):
    """Scores spread over thousands (as in a trained stage-1 block): E holds no subnormal number
    (slow on CPUs), its rows still peak at exactly 1, and out matches float64 to rounding."""
    from tinyba2m.attention.nonlocal_attention import score_floor, unnormalised_attention
    rng = backend.new_host_rng(1)
    theta = xp.asarray(rng.standard_normal((2, 4, 32)).astype("float32") * 30)
    phi = xp.asarray(rng.standard_normal((2, 4, 16)).astype("float32") * 30)
    g = xp.asarray(rng.standard_normal((2, 1, 16)).astype("float32"))
    e = unnormalised_attention(theta, phi)
    assert bool((e >= xp.exp(xp.asarray(score_floor(xp, xp.float32), dtype="float32"))).all())
    assert bool((e >= xp.finfo(xp.float32).tiny).all()) and bool((e.max(axis=2) == 1).all())
    out, _ = nonlocal_attention_forward(theta, phi, g)
    s = host(xp.matmul(theta.transpose(0, 2, 1), phi)).astype("float64")    # the same float32 scores
    p = np.exp(s - s.max(axis=2, keepdims=True))                              # no floor, float64
    want = np.einsum("nqm,nvm->nqv", p / p.sum(axis=2, keepdims=True), host(g))
    assert np.allclose(host(out), want, rtol=1e-6, atol=1e-6)


def test_nonlocal_workspace_receives_the_attention_matrix(xp, rng):
    theta, phi, g = arr(xp, rng, 2, 4, 6), arr(xp, rng, 2, 4, 5), arr(xp, rng, 2, 1, 5)
    work = xp.full((2, 6, 5), xp.nan)
    out, cache = nonlocal_attention_forward(theta, phi, g, workspace=work)
    assert cache[3] is work
    assert np.allclose(host(out), plain_attention(theta, phi, g), atol=1e-12)
    with pytest.raises(ValueError, match=r"nonlocal_attention: workspace must be a C-contiguous \(2, 6, 5\) array"):
        nonlocal_attention_forward(theta, phi, g, workspace=xp.zeros((2, 5, 6)))


def test_nonlocal_attention_does_not_depend_on_the_host_threads(monkeypatch):
    """The chunks of E run side by side on the host pool: the same numbers, bit for bit, with 1
    and 3 threads (one sample a chunk, so several chunks run at once)."""
    from tinyba2m.attention import nonlocal_attention
    monkeypatch.setattr(hostpool, "_host_threads", hostpool.host_threads())
    monkeypatch.setattr(hostpool, "_host_pool", None)
    monkeypatch.setattr(nonlocal_attention, "E_CHUNK_BYTES", 1)
    r = backend.new_host_rng(5)
    theta, phi, g = (r.standard_normal(s).astype("float32") for s in ((5, 3, 12), (5, 3, 6), (5, 2, 6)))
    dout = r.standard_normal((5, 12, 2)).astype("float32")
    runs = []
    for threads in (1, 3):
        hostpool.set_host_threads(threads)
        assert len(nonlocal_attention.sample_chunks(backend.numpy_module.empty((5, 12, 6)))) == 5
        out, cache = nonlocal_attention_forward(theta, phi, g)
        runs.append((out,) + nonlocal_attention_backward(dout, cache))
    for a, b in zip(*runs):
        assert (a == b).all()
