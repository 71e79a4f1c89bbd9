"""conv2d: the fast im2col version against the loop definition (also with an uneven last batch
chunk), its algebra (output size, linearity, adjointness), finite differences, the Conv2d module
and every bad input."""
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import CONV_EXAMPLES, conv_configs, conv_examples, float_dtypes, given_settings

from tinyba2m import backend, hostpool
from tinyba2m.gradcheck import check_module, check_op
from tinyba2m.nn import Conv2d
from tinyba2m.ops import conv as conv_ops
from tinyba2m.ops.conv import (col2im, col2im_flat, conv2d_backward, conv2d_backward_naive, conv2d_forward,
                               conv2d_forward_naive, conv2d_input_backward, conv_output_size, im2col, im2col_flat,
                               pad_input)

np = backend.numpy_module


def make(xp, cfg, seed=0, dtype="float64", integers=False):
    """x, w, b (or None) of ``cfg``: standard normal, or small integers (many ties, exact sums)."""
    r = backend.new_host_rng(seed)
    draw = (lambda shape: r.integers(-3, 4, shape)) if integers else r.standard_normal  # noqa: E731
    x = xp.asarray(draw(cfg["x_shape"]).astype(dtype))
    w = xp.asarray(draw(cfg["w_shape"]).astype(dtype))
    b = xp.asarray(draw(cfg["w_shape"][0]).astype(dtype)) if cfg["bias"] else None
    return x, w, b


def kw(cfg):
    return {"stride": cfg["stride"], "padding": cfg["padding"], "dilation": cfg["dilation"]}


def inner(a, b):
    return float((a * b).sum())


# --- algebra and the reference, over random configurations -------------------------------------

# (size, kernel, stride, padding, dilation) -> output size, worked out by hand
KNOWN_SIZES = [
    ((32, 3, 1, 1, 1), 32),   # "same" 3x3
    ((32, 3, 2, 1, 1), 16),   # strided 3x3
    ((7, 3, 2, 1, 1), 4),     # odd input: the last window starts at padded row 6
    ((6, 3, 2, 0, 1), 2),     # the last row is not reached
    ((4, 1, 3, 0, 1), 2),     # 1x1 with a stride larger than the kernel: rows 0 and 3
    ((8, 3, 1, 4, 4), 8),     # BA2M's local branch: d = 4, padding 4 keeps the size
    ((7, 3, 1, 0, 2), 3),     # dilated taps span 5
    ((5, 3, 2, 0, 2), 1),     # the dilated kernel spans the whole input
    ((3, 3, 1, 1, 2), 1),     # ... only once padded
    ((1, 1, 1, 0, 1), 1),
]


def test_output_size_table():
    for args, size in KNOWN_SIZES:
        assert conv_output_size(*args) == size, args
    for (h, kh, sh, ph, dh), ho in KNOWN_SIZES[:5]:
        for (wd, kw_, sw, pw, dw), wo in KNOWN_SIZES[5:]:
            x, w = np.zeros((1, 2, h, wd)), np.zeros((3, 2, kh, kw_))
            out, _ = conv2d_forward(x, w, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
            assert out.shape == (1, 3, ho, wo), ((h, kh, sh, ph, dh), (wd, kw_, sw, pw, dw))


@given_settings()
@given(cfg=conv_configs(), integers=st.booleans())
@conv_examples(integers=False)
@example(cfg=CONV_EXAMPLES[0], integers=True)
@example(cfg=CONV_EXAMPLES[1], integers=True)
def test_fast_matches_naive_forward_and_backward(xp, cfg, integers):
    """Standard normal inputs agree to rounding; integer-valued ones (tied values, every sum
    exact in float64) agree exactly."""
    x, w, b = make(xp, cfg, integers=integers)
    out, cache = conv2d_forward(x, w, b, **kw(cfg))
    ref, ref_cache = conv2d_forward_naive(x, w, b, **kw(cfg))
    tol = {"atol": 0, "rtol": 0} if integers else {"atol": 1e-10, "rtol": 1e-10}
    assert out.shape == ref.shape and xp.allclose(out, ref, **tol)
    r = backend.new_host_rng(1)
    dout = xp.asarray(r.integers(-3, 4, out.shape).astype("float64") if integers else r.standard_normal(out.shape))
    for got, want in zip(conv2d_backward(dout, cache), conv2d_backward_naive(dout, ref_cache)):
        if want is None:
            assert got is None
        else:
            assert got.shape == want.shape and xp.allclose(got, want, **tol)


@given_settings()
@given(cfg=conv_configs(), alpha=st.floats(-3, 3), beta=st.floats(-3, 3))
@conv_examples(alpha=-1.5, beta=2.25)
def test_linear_in_x_and_in_w(xp, cfg, alpha, beta):
    x1, w1, _ = make(xp, cfg, 0)
    x2, w2, _ = make(xp, cfg, 1)
    conv = lambda x, w: conv2d_forward(x, w, None, **kw(cfg))[0]  # noqa: E731
    assert xp.allclose(conv(alpha * x1 + beta * x2, w1), alpha * conv(x1, w1) + beta * conv(x2, w1), atol=1e-9)
    assert xp.allclose(conv(x1, alpha * w1 + beta * w2), alpha * conv(x1, w1) + beta * conv(x1, w2), atol=1e-9)


@given_settings()
@given(cfg=conv_configs())
@conv_examples()
def test_adjoint_identity(xp, cfg):
    """<conv(x), y> == <x, conv_input_backward(y)> and == <w, dw(y)>: backward is the transpose."""
    x, w, _ = make(xp, cfg)
    out, cache = conv2d_forward(x, w, None, **kw(cfg))
    y = xp.asarray(backend.new_host_rng(2).standard_normal(out.shape))
    lhs = inner(out, y)
    dx = conv2d_input_backward(y, w, x.shape, **kw(cfg))
    _, dw, _ = conv2d_backward(y, cache)
    assert inner(x, dx) == pytest.approx(lhs, rel=1e-9, abs=1e-9)
    assert inner(w, dw) == pytest.approx(lhs, rel=1e-9, abs=1e-9)


@given_settings()
@given(cfg=conv_configs(), dtype=float_dtypes)
@conv_examples(dtype="float32")
def test_dtype_is_kept(xp, cfg, dtype):
    x, w, b = make(xp, cfg, dtype=dtype)
    out, cache = conv2d_forward(x, w, b, **kw(cfg))
    assert out.dtype == xp.dtype(dtype)
    assert all(g is None or g.dtype == xp.dtype(dtype) for g in conv2d_backward(xp.ones_like(out), cache))


@given_settings()
@given(cfg=conv_configs(max_side=6))
@conv_examples()
def test_batch_chunks_match_naive(xp, cfg):
    """With a tiny CHUNK_BYTES the host path cuts the batch into one-sample chunks; the result
    must not depend on the cut."""
    x, w, b = make(xp, cfg)
    ref, ref_cache = conv2d_forward_naive(x, w, b, **kw(cfg))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_ops, "CHUNK_BYTES", 1)
        assert len(conv_ops.batch_chunks(x, 8)) == (x.shape[0] if backend.name == "numpy" else 1)
        out, cache = conv2d_forward(x, w, b, **kw(cfg))
        dout = xp.asarray(backend.new_host_rng(1).standard_normal(out.shape))
        grads = conv2d_backward(dout, cache)
    assert xp.allclose(out, ref, atol=1e-10, rtol=1e-10)
    for got, want in zip(grads, conv2d_backward_naive(dout, ref_cache)):
        assert (got is None and want is None) or xp.allclose(got, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("n,sizes", [(3, [2, 1]), (5, [2, 2, 1])])
@pytest.mark.parametrize("geometry", [{"stride": 1, "padding": 1, "dilation": (2, 1)},
                                      {"stride": 2, "padding": (1, 0), "dilation": (1, 2)}])
def test_uneven_last_chunk_matches_naive(n, sizes, geometry):
    """Two samples per chunk, so the last chunk is short (3 = 2 + 1, 5 = 2 + 2 + 1): forward and
    backward must still equal the loop definition on every sample."""
    cfg = {"x_shape": (n, 3, 6, 5), "w_shape": (4, 3, 3, 2), "bias": True, **geometry}
    x, w, b = make(np, cfg)
    ref, ref_cache = conv2d_forward_naive(x, w, b, **kw(cfg))
    dout = backend.new_host_rng(1).standard_normal(ref.shape)
    cuts, real = [], conv_ops.batch_chunks
    with pytest.MonkeyPatch.context() as mp:
        def two_per_chunk(x_, bytes_per_sample):
            """The real cut with a budget of two samples' columns (whatever each pass needs per sample)."""
            mp.setattr(conv_ops, "CHUNK_BYTES", 2 * bytes_per_sample + bytes_per_sample // 2)
            chunks = real(x_, bytes_per_sample)
            cuts.append([c.stop - c.start for c in chunks])
            return chunks

        mp.setattr(conv_ops, "batch_chunks", two_per_chunk)
        out, cache = conv2d_forward(x, w, b, **kw(cfg))
        grads = conv2d_backward(dout, cache)
    assert np.allclose(out, ref, atol=1e-10, rtol=1e-10)
    for got, want in zip(grads, conv2d_backward_naive(dout, ref_cache)):
        assert np.allclose(got, want, atol=1e-10, rtol=1e-10)
    assert cuts == [sizes, sizes]  # forward and backward really cut the batch this way


@pytest.mark.parametrize("kh,kw_,p,d", [(3, 3, (1, 1), (1, 1)), (2, 3, (0, 2), (2, 1)), (3, 2, (1, 1), (1, 2)), (1, 1, (1, 0), (1, 1))])
def test_flat_columns_match_plain_columns(xp, kh, kw_, p, d):
    """im2col_flat holds the stride-1 columns of im2col plus junk columns j >= W_out; col2im_flat
    (with zero junk columns) equals col2im."""
    n, c, h, wd = 2, 3, 5, 6
    x = xp.asarray(backend.new_host_rng(7).standard_normal((n, c, h, wd)))
    ho, wo = conv_output_size(h, kh, 1, p[0], d[0]), conv_output_size(wd, kw_, 1, p[1], d[1])
    wp = wd + 2 * p[1]
    plain = im2col(pad_input(x, p), kh, kw_, (1, 1), d, ho, wo).reshape(-1, n, ho, wo)
    flat = im2col_flat(pad_input(x, p, extra_rows=1), kh, kw_, d, ho).reshape(-1, n, ho, wp)
    assert xp.array_equal(flat[..., :wo], plain)
    dcols = xp.asarray(backend.new_host_rng(8).standard_normal((c, kh, kw_, n, ho, wo)))
    dcols_flat = xp.zeros((c, kh, kw_, n, ho, wp))
    dcols_flat[..., :wo] = dcols
    want = col2im(dcols, x.shape, (1, 1), p, d)
    got = col2im_flat(dcols_flat.reshape(c, kh, kw_, n, ho * wp), x.shape, p, d)
    assert got.shape == want.shape == (c, n, h, wd) and xp.allclose(got, want, atol=1e-12)


# --- finite differences ---------------------------------------------------------------------

@pytest.mark.parametrize("x_shape,w_shape,kwargs,bias", [
    ((2, 3, 5, 5), (2, 3, 3, 3), {"padding": 1}, True),
    ((1, 2, 7, 6), (3, 2, 2, 3), {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1)}, True),
    ((2, 3, 4, 4), (2, 3, 1, 1), {}, False),
])
def test_finite_differences(xp, x_shape, w_shape, kwargs, bias):
    r = backend.new_host_rng(3)
    inputs = [xp.asarray(r.standard_normal(s)) for s in [x_shape, w_shape] + ([(w_shape[0],)] if bias else [])]
    res = check_op(conv2d_forward, conv2d_backward, inputs, names=["x", "w", "b"][:len(inputs)], kwargs=kwargs)
    assert res.passed and res.worst < 1e-6, str(res)


def test_finite_differences_module(xp):
    backend.seed(0)
    res = check_module(Conv2d(2, 3, 3, stride=2, padding=1, dilation=1), (2, 2, 5, 5))
    assert res.passed and set(res.errors) == {"input", "w", "b"}, str(res)


# --- specifics ------------------------------------------------------------------------------

def test_known_values():
    """A 2x2 all-ones kernel on a 3x3 ramp sums each 2x2 window."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    out, _ = conv2d_forward(x, np.ones((1, 1, 2, 2)), np.array([0.5]))
    assert np.array_equal(out[0, 0], np.array([[8.5, 12.5], [20.5, 24.5]]))


def test_one_by_one_fast_path_is_channel_matmul(xp):
    r = backend.new_host_rng(4)
    x, w, b = (xp.asarray(r.standard_normal(s)) for s in [(3, 4, 5, 6), (2, 4, 1, 1), (2,)])
    out, cache = conv2d_forward(x, w, b)
    assert cache[0] == "1x1"
    want = xp.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x) + b.reshape(1, 2, 1, 1)
    assert xp.allclose(out, want)
    dout = xp.asarray(r.standard_normal(out.shape))
    _, ref_cache = conv2d_forward_naive(x, w, b)
    for got, ref in zip(conv2d_backward(dout, cache), conv2d_backward_naive(dout, ref_cache)):
        assert xp.allclose(got, ref)


def test_non_contiguous_input(xp):
    r = backend.new_host_rng(5)
    x = xp.asarray(r.standard_normal((4, 3, 6, 6))).transpose(1, 0, 3, 2)  # (3, 4, 6, 6), not contiguous
    w = xp.asarray(r.standard_normal((2, 4, 3, 3)))
    for kwargs in ({"padding": 0}, {"padding": 1, "stride": 2}):
        assert xp.allclose(conv2d_forward(x, w, **kwargs)[0], conv2d_forward_naive(xp.ascontiguousarray(x), w, **kwargs)[0])
    w1 = w[:, :, :1, :1]
    assert xp.allclose(conv2d_forward(x, w1)[0], conv2d_forward_naive(xp.ascontiguousarray(x), w1)[0])


def test_module_parameters_and_init():
    backend.seed(0)
    m = Conv2d(16, 32, 3, padding=1)
    assert m.params["w"].shape == (32, 16, 3, 3) and m.params["b"].shape == (32,)
    assert m.params["w"].dtype == np.float32 and not m.params["b"].any()
    assert abs(float(m.params["w"].std()) - math.sqrt(2 / (16 * 9))) < 0.01
    assert "b" not in Conv2d(3, 4, 3, bias=False).params


def test_module_forward_backward_and_grad_accumulation(xp):
    backend.seed(0)
    m = Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(1, 0)).to_backend()
    x = xp.asarray(backend.new_host_rng(6).standard_normal((2, 3, 5, 6)).astype("float32"))
    out = m.forward(x)
    ref, _ = conv2d_forward(x, m.params["w"], m.params["b"], (1, 2), (1, 0))
    assert xp.allclose(out, ref)
    m.zero_grad()
    dout = xp.ones_like(out)
    dx = m.backward(dout)
    assert dx.shape == x.shape
    g1 = m.grads["w"].copy()
    m.forward(x)
    m.backward(dout)
    assert xp.allclose(m.grads["w"], 2 * g1)  # backward adds to the gradients


# --- bad input ------------------------------------------------------------------------------

GOOD_X, GOOD_W = (2, 3, 5, 5), (4, 3, 3, 3)


def bad(xp, x_shape=GOOD_X, w_shape=GOOD_W, x_dtype="float64", b_shape=None, **kwargs):
    x = xp.ones(x_shape, dtype=x_dtype)
    w = xp.ones(w_shape)
    b = None if b_shape is None else xp.ones(b_shape)
    return conv2d_forward(x, w, b, **kwargs)


@pytest.mark.parametrize("case,match", [
    ({"x_shape": (3, 5, 5)}, r"conv2d: expected x to be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)"),
    ({"w_shape": (4, 3, 3)}, r"conv2d: expected w to be 4-D"),
    ({"w_shape": (4, 2, 3, 3)}, r"conv2d: channel mismatch: x has 3 channels .* w expects 2"),
    ({"x_shape": (2, 3, 2, 2)}, r"conv2d: kernel 3x3 .* larger than the padded input 2x2"),
    ({"x_shape": (2, 3, 4, 4), "dilation": 2}, r"conv2d: kernel 3x3 with dilation \(2, 2\) spans 5x5, larger than the padded input 4x4"),
    ({"stride": 0}, r"conv2d: stride must be an integer >= 1, got 0"),
    ({"dilation": (1, 0)}, r"conv2d: dilation must be an integer >= 1, got 0"),
    ({"padding": -1}, r"conv2d: padding must be an integer >= 0, got -1"),
    ({"stride": 1.5}, r"conv2d: stride must be an integer"),
    ({"x_dtype": "int64"}, r"conv2d: expected x to be a floating-point array .* got dtype int64"),
    ({"b_shape": (3,)}, r"conv2d: expected bias of shape \(4,\), got \(3,\)"),
])
def test_bad_input(xp, case, match):
    with pytest.raises(ValueError, match=match):
        bad(xp, **case)


def test_kernel_fits_once_padded(xp):
    out, _ = bad(xp, x_shape=(1, 3, 2, 2), padding=1)
    assert out.shape == (1, 4, 2, 2)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input(xp, value, check_finite):
    x = xp.ones(GOOD_X)
    x[0, 1, 2, 2] = value
    with pytest.raises(ValueError, match="conv2d: x contains non-finite values"):
        conv2d_forward(x, xp.ones(GOOD_W))
    with pytest.raises(ValueError, match="conv2d: w contains non-finite values"):
        conv2d_forward(xp.ones(GOOD_X), x[:4, :, :3, :3])
    with pytest.raises(ValueError, match="conv2d: b contains non-finite values"):
        conv2d_forward(xp.ones(GOOD_X), xp.ones(GOOD_W), x[0, 1, 2, :4])


def test_integer_weights(xp):
    with pytest.raises(ValueError, match="conv2d: expected w to be a floating-point array"):
        conv2d_forward(xp.ones(GOOD_X), xp.ones(GOOD_W, dtype="int32"))


def test_module_channel_mismatch_message(xp):
    m = Conv2d(16, 32, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(16->32, k=3\): expected input with 16 channels, got 8 \(input shape \(2, 8, 6, 6\)\)"):
        m.forward(xp.ones((2, 8, 6, 6), dtype="float32"))
    with pytest.raises(ValueError, match=r"Conv2d\(16->32, k=3\): expected a 4-D input \(N, C, H, W\), got shape \(2, 16\)"):
        m.forward(xp.ones((2, 16), dtype="float32"))


@pytest.mark.parametrize("args,match", [
    ((0, 4, 3), "Conv2d: in_channels must be an integer >= 1"),
    ((3, 4, 0), "Conv2d: kernel_size must be an integer >= 1"),
    ((3, 4, 3, 0), "Conv2d: stride must be an integer >= 1"),
    ((3, 4, 3, 1, -1), "Conv2d: padding must be an integer >= 0"),
    ((3, 4, 3, 1, 0, 0), "Conv2d: dilation must be an integer >= 1"),
])
def test_module_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        Conv2d(*args)


@pytest.mark.parametrize("x_shape,w_shape,kwargs", [
    ((3, 4, 7, 6), (4, 4, 3, 3), {"padding": 1}),                              # dx as a conv of padded dout
    ((2, 3, 9, 9), (2, 3, 3, 2), {"padding": (4, 2), "dilation": (4, 2)}),     # the same, dilated, F < C
    ((2, 2, 6, 6), (5, 2, 3, 3), {"padding": 1}),                              # F > C: flat col2im
    ((2, 3, 5, 5), (3, 3, 1, 3), {"padding": (1, 0)}),                         # q < 0: flat col2im
    ((2, 3, 7, 8), (4, 3, 3, 3), {"stride": 2, "padding": 1}),                 # strided col2im
])
def test_every_input_gradient_path_matches_naive(xp, x_shape, w_shape, kwargs):
    r = backend.new_host_rng(3)
    x, w = xp.asarray(r.standard_normal(x_shape)), xp.asarray(r.standard_normal(w_shape))
    out, cache = conv2d_forward(x, w, None, **kwargs)
    ref, ref_cache = conv2d_forward_naive(x, w, None, **kwargs)
    dout = xp.asarray(r.standard_normal(out.shape))
    for got, want in zip(conv2d_backward(dout, cache)[:2], conv2d_backward_naive(dout, ref_cache)[:2]):
        assert xp.allclose(got, want, atol=1e-10, rtol=1e-10)


def test_flipped_kernel_swaps_channels_and_rotates():
    w = np.arange(2 * 3 * 2 * 3, dtype=float).reshape(2, 3, 2, 3)
    fw = conv_ops.flipped_kernel(w)
    assert fw.shape == (3, 2, 2, 3) and fw[1, 0, 0, 0] == w[0, 1, 1, 2] and fw[2, 1, 1, 2] == w[1, 2, 0, 0]


def test_results_do_not_depend_on_the_host_threads(monkeypatch):
    """Chunks run side by side on a thread pool: the same numbers with 1 and 3 threads."""
    monkeypatch.setattr(hostpool, "_host_threads", hostpool.host_threads())
    monkeypatch.setattr(hostpool, "_host_pool", None)
    monkeypatch.setattr(conv_ops, "CHUNK_BYTES", 1)                # one sample per chunk
    r = backend.new_host_rng(4)
    x, w = r.standard_normal((5, 3, 6, 6)), r.standard_normal((4, 3, 3, 3))
    runs = []
    for threads in (1, 3):
        hostpool.set_host_threads(threads)
        assert len(conv_ops.batch_chunks(x, 8)) == 5
        out, cache = conv2d_forward(x, w, None, padding=1)
        runs.append((out,) + conv2d_backward(np.cos(out), cache)[:2])
    for a, b in zip(*runs):
        assert np.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_chunk_budget_follows_the_blas_threading(monkeypatch):
    """L2-sized chunks on one thread, 4 MiB ones side by side on the pool, large ones when a
    product starts several BLAS threads (no pool); a set CHUNK_BYTES overrides all three."""
    monkeypatch.setattr(hostpool, "_host_threads", hostpool.host_threads())
    monkeypatch.setattr(hostpool, "blas_threads", lambda: 2)
    hostpool.set_host_threads(2)
    assert conv_ops.chunk_budget() == 4 * 2 ** 20
    hostpool.set_host_threads(1)
    assert conv_ops.chunk_budget() == 16 * 2 ** 20
    monkeypatch.setattr(hostpool, "blas_threads", lambda: 1)
    assert conv_ops.chunk_budget() == 2 ** 20
    monkeypatch.setattr(conv_ops, "CHUNK_BYTES", 12345)
    assert conv_ops.chunk_budget() == 12345
