"""Hypothesis strategies shared by the tests: shapes, kernel sizes, strides, paddings,
dilations, float dtypes, and whole valid conv / pooling configurations (small, so every example
runs in milliseconds), plus explicit configurations every conv / pooling property must also see
(``conv_examples`` / ``pool_examples``: with a fixed seed and 25 examples the drawn cases never change).

    from strategies import conv_configs, pool_configs, float_dtypes, arrays_for
"""
from __future__ import annotations

from hypothesis import example
from hypothesis import strategies as st

from tinyba2m import backend

np = backend.numpy_module

float_dtypes = st.sampled_from(["float32", "float64"])
batch_sizes = st.integers(1, 3)
channels = st.integers(1, 4)
spatial = st.integers(1, 8)
kernel_sizes = st.integers(1, 4)
strides = st.integers(1, 3)
paddings = st.integers(0, 2)
dilations = st.integers(1, 3)


def int_or_pair(values):
    """An int drawn from ``values`` or an (H, W) pair of them."""
    return st.one_of(values, st.tuples(values, values))


def as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def shapes(min_dims=1, max_dims=4, min_side=1, max_side=5):
    """Array shapes with ``min_dims..max_dims`` dimensions of ``min_side..max_side`` each."""
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def conv_configs(draw, max_side=8):
    """A valid conv2d set-up: dict(x_shape, w_shape, stride, padding, dilation, bias).

    The (dilated) kernel always fits the padded input, so the output has at least one pixel."""
    n, c, f = draw(batch_sizes), draw(channels), draw(channels)
    kh, kw = as_pair(draw(int_or_pair(kernel_sizes)))
    stride = draw(int_or_pair(strides))
    padding = draw(int_or_pair(paddings))
    dilation = draw(int_or_pair(dilations))
    p, d = as_pair(padding), as_pair(dilation)
    min_h = max(1, d[0] * (kh - 1) + 1 - 2 * p[0])
    min_w = max(1, d[1] * (kw - 1) + 1 - 2 * p[1])
    h = draw(st.integers(min_h, max(min_h, max_side)))
    w = draw(st.integers(min_w, max(min_w, max_side)))
    return {"x_shape": (n, c, h, w), "w_shape": (f, c, kh, kw), "stride": stride, "padding": padding,
            "dilation": dilation, "bias": draw(st.booleans())}


# the cases a fixed-seed draw may never produce: stride-1 dilated (the padded-width im2col path
# with gaps between taps), strided and dilated, and a batch of one
CONV_EXAMPLES = (
    {"x_shape": (2, 3, 7, 6), "w_shape": (2, 3, 3, 2), "stride": 1, "padding": (1, 2), "dilation": (2, 3), "bias": True},
    {"x_shape": (2, 2, 8, 7), "w_shape": (3, 2, 2, 3), "stride": (2, 3), "padding": 1, "dilation": 2, "bias": False},
    {"x_shape": (1, 2, 5, 5), "w_shape": (2, 2, 3, 3), "stride": 2, "padding": 1, "dilation": 1, "bias": True},
)


def cfg_examples(cases, **others):
    """``@example(cfg=...)`` for each config of ``cases``; ``others`` gives the test's other arguments."""
    def decorate(test):
        for cfg in cases:
            test = example(cfg=cfg, **others)(test)
        return test
    return decorate


def conv_examples(**others):
    """:func:`cfg_examples` of ``CONV_EXAMPLES``."""
    return cfg_examples(CONV_EXAMPLES, **others)


@st.composite
def pool_configs(draw, max_side=8):
    """A valid pooling set-up: dict(x_shape, kernel_size, stride, padding).

    Padding is at most half the kernel (the max-pool rule), the kernel fits the padded input;
    ``stride`` may be None (= kernel_size)."""
    n, c = draw(batch_sizes), draw(channels)
    kh, kw = as_pair(draw(int_or_pair(kernel_sizes)))
    kernel = (kh, kw) if draw(st.booleans()) or kh != kw else kh
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    padding = ph if ph == pw and draw(st.booleans()) else (ph, pw)
    stride = draw(st.one_of(st.none(), int_or_pair(strides)))
    h = draw(st.integers(max(1, kh - 2 * ph), max(max(1, kh - 2 * ph), max_side)))
    w = draw(st.integers(max(1, kw - 2 * pw), max(max(1, kw - 2 * pw), max_side)))
    return {"x_shape": (n, c, h, w), "kernel_size": kernel, "stride": stride, "padding": padding}


# overlapping stride-1 windows with padding on a batch of one; a non-square kernel with a stride
# larger than it (gaps) and uneven padding; the default stride with a remainder row and column
POOL_EXAMPLES = (
    {"x_shape": (1, 2, 5, 4), "kernel_size": 3, "stride": 1, "padding": 1},
    {"x_shape": (2, 1, 7, 8), "kernel_size": (2, 3), "stride": (3, 2), "padding": (1, 0)},
    {"x_shape": (3, 2, 5, 5), "kernel_size": 2, "stride": None, "padding": 0},
)


def pool_examples(**others):
    """:func:`cfg_examples` of ``POOL_EXAMPLES``."""
    return cfg_examples(POOL_EXAMPLES, **others)


def distinct_values(rng, shape, gap=0.01):
    """A float64 host array of ``shape`` whose values are all distinct, ``gap`` apart and
    none within ``gap / 2`` of zero (a shuffled ladder) — max-pool and ReLU checks stay away from ties and kinks."""
    size = int(np.prod(shape))
    ladder = (np.arange(size) - size // 2 + 0.5) * gap  # spaced by gap, none within gap/2 of 0
    return rng.permutation(ladder).reshape(shape)


def arrays_for(xp, rng, shape, dtype="float64"):
    """A standard-normal array of the active backend."""
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


def given_settings(**kwargs):
    """``@settings`` for ``@given`` tests that also take the (function-scoped) ``xp`` fixture:
    the fixture only selects the backend, so reusing it across examples is safe."""
    from hypothesis import HealthCheck, settings
    return settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large], **kwargs)
