"""Max / average / global average pooling: against a loop reference (also on tied values),
routing of the upstream gradient, conservation, finite differences, modules and bad input."""
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import POOL_EXAMPLES, as_pair, distinct_values, given_settings, pool_configs, pool_examples

from tinyba2m import backend
from tinyba2m.gradcheck import check_module, check_op
from tinyba2m.nn import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from tinyba2m.ops.pooling import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward,
                                  global_avg_pool_forward, max_pool2d_backward, max_pool2d_forward)

np = backend.numpy_module


def geometry(cfg):
    k = as_pair(cfg["kernel_size"])
    s = k if cfg["stride"] is None else as_pair(cfg["stride"])
    return k, s, as_pair(cfg["padding"])


def windows(cfg):
    """Yield (i, j, rows, cols) of each output pixel's window in UNPADDED coordinates, clipped."""
    (n, c, h, w), (k, s, p) = cfg["x_shape"], geometry(cfg)
    ho, wo = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            yield i, j, slice(max(r0, 0), min(r0 + k[0], h)), slice(max(c0, 0), min(c0 + k[1], w))


def reference(cfg, x, kind):
    """Loop-per-output-pixel pooling on the host (avg divides by the full kernel area)."""
    k = geometry(cfg)[0]
    cells = list(windows(cfg))
    ho, wo = cells[-1][0] + 1, cells[-1][1] + 1
    out = np.zeros(x.shape[:2] + (ho, wo))
    for i, j, rows, cols in cells:
        win = x[:, :, rows, cols]
        out[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.sum(axis=(2, 3)) / (k[0] * k[1])
    return out


def pool_args(cfg):
    return cfg["kernel_size"], cfg["stride"], cfg["padding"]


def values(seed, shape, tied):
    """Distinct values (no ties), or integers in {-1, 0, 1} (ties in nearly every window)."""
    rng = backend.new_host_rng(seed)
    return rng.integers(-1, 2, shape).astype("float64") if tied else distinct_values(rng, shape)


@given_settings()
@given(cfg=pool_configs(), seed=st.integers(0, 2**16), tied=st.booleans())
@pool_examples(seed=0, tied=False)
@example(cfg=POOL_EXAMPLES[0], seed=0, tied=True)
def test_forward_matches_reference(xp, cfg, seed, tied):
    x = values(seed, cfg["x_shape"], tied) - 5.0  # all negative: padding must not win
    for kind, fwd in (("max", max_pool2d_forward), ("avg", avg_pool2d_forward)):
        out, _ = fwd(xp.asarray(x), *pool_args(cfg))
        assert np.allclose(backend.to_host(out), reference(cfg, x, kind), atol=1e-12)


# picks: (output cell, sample, channel) as raw integers, reduced modulo the counts of the case
picks = st.lists(st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(0, 999)), min_size=1, max_size=6)


@given_settings()
@given(cfg=pool_configs(), seed=st.integers(0, 2**16), tied=st.booleans(), picked=picks)
@pool_examples(seed=0, tied=False, picked=[(0, 0, 0), (5, 1, 1), (998, 2, 3)])
@example(cfg=POOL_EXAMPLES[0], seed=0, tied=True, picked=[(0, 0, 0), (4, 0, 1), (7, 0, 1), (19, 0, 0)])
@example(cfg=POOL_EXAMPLES[1], seed=1, tied=True, picked=[(1, 1, 0), (6, 0, 0), (11, 1, 0)])
def test_max_pool_routes_each_upstream_value_to_exactly_one_input(xp, cfg, seed, tied, picked):
    """Each upstream value lands on its window's maximum — the first one in row-major window
    order on ties — and nowhere else."""
    x = values(seed, cfg["x_shape"], tied)
    out, cache = max_pool2d_forward(xp.asarray(x), *pool_args(cfg))
    cells = list(windows(cfg))
    for cell, n, c in picked:
        i, j, rows, cols = cells[cell % len(cells)]
        n, c = n % x.shape[0], c % x.shape[1]
        dout = np.zeros(out.shape)
        dout[n, c, i, j] = 2.5
        dx = backend.to_host(max_pool2d_backward(xp.asarray(dout), cache))
        assert np.count_nonzero(dx) == 1 and dx.sum() == 2.5
        win = x[n, c, rows, cols]
        a, e = np.unravel_index(np.argmax(win), win.shape)  # argmax: the first maximum in row-major order
        assert dx[n, c, rows, cols][a, e] == 2.5
    # all upstream values at once: nothing is lost or duplicated
    dout = backend.new_host_rng(seed + 1).standard_normal(out.shape)
    dx = max_pool2d_backward(xp.asarray(dout), cache)
    assert float(dx.sum()) == pytest.approx(float(dout.sum()), abs=1e-9)


def test_max_pool_ties_go_to_the_first_maximum(xp):
    x = xp.ones((1, 1, 2, 2))
    out, cache = max_pool2d_forward(x, 2)
    dx = max_pool2d_backward(xp.ones_like(out), cache)
    assert backend.to_host(dx).tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]


@given_settings()
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
@pool_examples(seed=0)
def test_avg_pool_backward_spreads_dout_over_the_window(xp, cfg, seed):
    """Each upstream value is divided by the kernel area and given to every real cell of its
    window; without padding the total is conserved."""
    k, _, p = geometry(cfg)
    area = k[0] * k[1]
    x = xp.asarray(backend.new_host_rng(seed).standard_normal(cfg["x_shape"]))
    out, cache = avg_pool2d_forward(x, *pool_args(cfg))
    dout = backend.new_host_rng(seed + 1).standard_normal(out.shape)
    dx = backend.to_host(avg_pool2d_backward(xp.asarray(dout), cache))
    want = np.zeros(cfg["x_shape"])
    real_cells = np.zeros(out.shape[2:])
    for i, j, rows, cols in windows(cfg):
        want[:, :, rows, cols] += dout[:, :, i, j][:, :, None, None] / area
        real_cells[i, j] = (rows.stop - rows.start) * (cols.stop - cols.start)
    assert np.allclose(dx, want)
    assert dx.sum() == pytest.approx((dout * real_cells).sum() / area, abs=1e-9)
    if p == (0, 0):
        assert dx.sum() == pytest.approx(dout.sum(), abs=1e-9)


@given_settings()
@given(cfg=pool_configs())
@pool_examples()
def test_avg_pool_adjoint(xp, cfg):
    x = xp.asarray(backend.new_host_rng(0).standard_normal(cfg["x_shape"]))
    out, cache = avg_pool2d_forward(x, *pool_args(cfg))
    y = xp.asarray(backend.new_host_rng(1).standard_normal(out.shape))
    assert float((out * y).sum()) == pytest.approx(float((x * avg_pool2d_backward(y, cache)).sum()), abs=1e-9)


def test_avg_pool_counts_padding_in_divisor(xp):
    out, _ = avg_pool2d_forward(xp.ones((1, 1, 2, 2)), 3, stride=1, padding=1)
    assert np.allclose(backend.to_host(out)[0, 0], np.full((2, 2), 4 / 9))


def test_global_avg_pool(xp):
    x = xp.asarray(backend.new_host_rng(2).standard_normal((2, 3, 4, 5)))
    out, cache = global_avg_pool_forward(x)
    assert out.shape == (2, 3) and xp.allclose(out, x.mean(axis=(2, 3)))
    dout = xp.asarray(backend.new_host_rng(3).standard_normal((2, 3)))
    dx = global_avg_pool_backward(dout, cache)
    assert dx.shape == x.shape and xp.allclose(dx, xp.broadcast_to(dout[:, :, None, None] / 20, x.shape))
    assert xp.allclose(dx.sum(axis=(2, 3)), dout)


# --- finite differences ---------------------------------------------------------------------

@pytest.mark.parametrize("fwd,bwd", [(max_pool2d_forward, max_pool2d_backward), (avg_pool2d_forward, avg_pool2d_backward)])
@pytest.mark.parametrize("kwargs", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                                    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0)}])
def test_finite_differences(xp, fwd, bwd, kwargs):
    x = xp.asarray(distinct_values(backend.new_host_rng(4), (2, 2, 5, 6), gap=0.05))
    res = check_op(fwd, bwd, [x], names=["x"], kwargs=kwargs)
    assert res.passed and res.worst < 1e-6, str(res)


def test_finite_differences_global(xp):
    x = xp.asarray(backend.new_host_rng(5).standard_normal((2, 3, 3, 2)))
    res = check_op(global_avg_pool_forward, global_avg_pool_backward, [x], names=["x"])
    assert res.passed and res.worst < 1e-6, str(res)


@pytest.mark.parametrize("module", [MaxPool2d(2), MaxPool2d(3, 1, 1), AvgPool2d(2, 1), AvgPool2d(3, 2, 1), GlobalAvgPool2d()])
def test_finite_differences_modules(xp, module):
    res = check_module(module, (2, 2, 4, 5), make_input=lambda r, s: distinct_values(r, s, gap=0.05))
    assert res.passed, str(res)


def test_modules_match_ops_and_default_stride(xp):
    x = xp.asarray(backend.new_host_rng(6).standard_normal((2, 3, 6, 6)).astype("float32"))
    m = MaxPool2d(2)
    assert m.stride == (2, 2) and m.forward(x).shape == (2, 3, 3, 3)
    assert xp.array_equal(m.forward(x), max_pool2d_forward(x, 2, 2)[0])
    a = AvgPool2d(3, stride=1, padding=1)
    assert xp.array_equal(a.forward(x), avg_pool2d_forward(x, 3, 1, 1)[0])
    assert a.backward(xp.ones((2, 3, 6, 6), dtype="float32")).shape == x.shape
    g = GlobalAvgPool2d()
    assert g.forward(x).shape == (2, 3) and g.backward(xp.ones((2, 3), dtype="float32")).shape == x.shape
    assert not m.params and not a.params and not g.params


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("shape,args,match", [
    ((3, 4, 4), (2,), r"expected x to be 4-D \(N, C, H, W\), got shape \(3, 4, 4\)"),
    ((1, 1, 2, 2), (3,), r"kernel 3x3 is larger than the padded input 2x2"),
    ((1, 1, 4, 4), (2, 0), r"stride must be an integer >= 1, got 0"),
    ((1, 1, 4, 4), (0,), r"kernel_size must be an integer >= 1, got 0"),
    ((1, 1, 4, 4), (2, 1, -1), r"padding must be an integer >= 0, got -1"),
    ((1, 1, 4, 4), (2, 1, 2), r"padding \(2, 2\) must be at most half the kernel \(2, 2\)"),
])
def test_bad_input(xp, op, shape, args, match):
    fwd = max_pool2d_forward if op == "max_pool2d" else avg_pool2d_forward
    with pytest.raises(ValueError, match=f"{op}: {match}"):
        fwd(xp.ones(shape), *args)


@pytest.mark.parametrize("fwd,op,args", [(max_pool2d_forward, "max_pool2d", (2,)), (avg_pool2d_forward, "avg_pool2d", (2,)),
                                         (global_avg_pool_forward, "global_avg_pool", ())])
def test_bad_dtype_and_non_finite(xp, fwd, op, args, check_finite):
    with pytest.raises(ValueError, match=f"{op}: expected x to be a floating-point array .* got dtype int64"):
        fwd(xp.ones((1, 1, 4, 4), dtype="int64"), *args)
    for bad in (float("nan"), -float("inf")):
        x = xp.ones((1, 1, 4, 4))
        x[0, 0, 1, 2] = bad
        with pytest.raises(ValueError, match=f"{op}: x contains non-finite values"):
            fwd(x, *args)


def test_global_bad_ndim(xp):
    with pytest.raises(ValueError, match=r"global_avg_pool: expected x to be 4-D \(N, C, H, W\), got shape \(2, 3\)"):
        global_avg_pool_forward(xp.ones((2, 3)))


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_module_bad_arguments(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=f"{name}: kernel_size must be an integer >= 1"):
        cls(0)
    with pytest.raises(ValueError, match=f"{name}: stride must be an integer >= 1"):
        cls(2, 0)
    with pytest.raises(ValueError, match=rf"{name}: padding \(2, 2\) must be at most half the kernel"):
        cls(3, 1, 2)
