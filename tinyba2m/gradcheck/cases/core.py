"""Gradient-check cases for the core layers: conv2d, pooling, batch norm and the fused batch norm +
ReLU (ops and modules)."""
from __future__ import annotations

from ... import backend
from ...nn import AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormReLU2d, Conv2d, GlobalAvgPool2d, MaxPool2d
from ...ops.batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_relu_backward, batchnorm_relu_forward
from ...ops.conv import conv2d_backward, conv2d_forward
from ...ops.pooling import (avg_pool2d_backward, avg_pool2d_forward, channel_pool_backward, channel_pool_forward,
                            global_avg_pool_backward, global_avg_pool_forward, global_max_pool_backward,
                            global_max_pool_forward, max_pool2d_backward, max_pool2d_forward)
from ..checker import check_module, check_op, merge_results as merge
from ..registry import register, register_with
from . import module_case, op_case
from .inputs import distinct, normal, uniform


# --- conv2d ---------------------------------------------------------------------------------

CONV_VARIANTS = [  # (label, x shape, w shape, kwargs, bias)
    ("3x3", (2, 3, 6, 6), (4, 3, 3, 3), {}, True),
    ("s=2,p=1", (2, 3, 7, 7), (4, 3, 3, 3), {"stride": 2, "padding": 1}, True),
    ("d=2,p=2", (2, 2, 7, 6), (3, 2, 3, 3), {"padding": 2, "dilation": 2}, True),
    ("2x3,s=(2,1),p=(1,0)", (2, 2, 6, 5), (3, 2, 2, 3), {"stride": (2, 1), "padding": (1, 0)}, True),
    ("no bias", (2, 3, 5, 5), (4, 3, 3, 3), {"padding": 1}, False),
    ("1x1", (2, 3, 4, 5), (4, 3, 1, 1), {}, True),
]


@register("conv2d")
def _conv2d():
    parts = []
    for i, (label, xs, ws, kw, bias) in enumerate(CONV_VARIANTS):
        inputs = [normal(xs, 10 + i), normal(ws, 20 + i)] + ([normal((ws[0],), 30 + i)] if bias else [])
        names = ["x", "w", "b"][:len(inputs)]
        parts.append((label, check_op(conv2d_forward, conv2d_backward, inputs, names=names, kwargs=kw, name="conv2d")))
    return merge("conv2d", parts)


@register("conv2d_module")
def _conv2d_module():
    backend.seed(0)
    a = check_module(Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 6, 6), name="conv2d_module")
    backend.seed(1)
    m = Conv2d(3, 2, 1)
    m.params["b"] = normal((2,), 5).astype(m.params["b"].dtype)
    b = check_module(m, (2, 3, 3, 4), name="conv2d_module")
    return merge("conv2d_module", [("3x3,s=2,p=1", a), ("1x1", b)])


# --- batch norm -----------------------------------------------------------------------------

@register("batchnorm")
def _batchnorm():
    parts = []
    for i, shape in enumerate([(6, 4), (3, 4, 3, 2)]):
        c = shape[1]
        rm, rv = normal((c,), 40 + i), uniform((c,), 0.5, 2.0, 50 + i)
        inputs = [normal(shape, 60 + i), 1 + 0.5 * normal((c,), 70 + i), normal((c,), 80 + i)]
        for training in (True, False):
            def fwd(x, g, b, training=training, rm=rm, rv=rv):
                return batchnorm_forward(x, g, b, rm, rv, training=training)
            label = f"{'NC' if len(shape) == 2 else 'NCHW'},{'train' if training else 'eval'}"
            parts.append((label, check_op(fwd, batchnorm_backward, inputs, names=["x", "gamma", "beta"], name="batchnorm")))
    return merge("batchnorm", parts)


def _bn_module(name, cls, shape):
    parts = []
    for training in (True, False):
        m = cls(shape[1])
        m.params["gamma"] = 1 + 0.5 * normal((shape[1],), 3).astype(m.params["gamma"].dtype)
        m.params["beta"] = normal((shape[1],), 4).astype(m.params["beta"].dtype)
        m.buffers["running_mean"] = normal((shape[1],), 5).astype(m.buffers["running_mean"].dtype)
        m.buffers["running_var"] = uniform((shape[1],), 0.5, 2.0, 6).astype(m.buffers["running_var"].dtype)
        parts.append(("train" if training else "eval", check_module(m, shape, name=name, train=training)))
    return merge(name, parts)


register_with("batchnorm1d_module", _bn_module, BatchNorm1d, (5, 3))
register_with("batchnorm2d_module", _bn_module, BatchNorm2d, (3, 2, 3, 3))


def kink_free_bn_input(rng, shape, gamma, beta, rm, rv, training, margin=0.02):
    """A standard normal x whose batch norm ``gamma * xhat + beta`` is at least ``margin`` from 0
    everywhere (no ReLU kink within reach of the finite differences): the first of up to 500
    draws from ``rng`` that is."""
    xp = backend.get_xp()
    for _ in range(500):
        x = xp.asarray(rng.standard_normal(shape))
        y = batchnorm_forward(x, gamma, beta, rm, rv, training=training)[0]
        if float(abs(y).min()) >= margin:
            return x
    raise RuntimeError(f"kink_free_bn_input: no draw of shape {shape} keeps batch norm {margin} away from 0")


@register("batchnorm_relu")
def _batchnorm_relu():
    """The fused pair max(batchnorm(x), 0), train and eval, on inputs away from the ReLU's kink."""
    parts = []
    shape = (3, 4, 3, 2)
    rm, rv = normal((4,), 41), uniform((4,), 0.5, 2.0, 51)
    gamma, beta = 1 + 0.5 * normal((4,), 71), 0.5 * normal((4,), 81)
    for training in (True, False):
        x = kink_free_bn_input(backend.new_host_rng(61), shape, gamma, beta, rm, rv, training)
        def fwd(x, g, b, training=training):
            return batchnorm_relu_forward(x, g, b, rm, rv, training=training)
        parts.append(("train" if training else "eval",
                      check_op(fwd, batchnorm_relu_backward, [x, gamma, beta], names=["x", "gamma", "beta"],
                               name="batchnorm_relu")))
    return merge("batchnorm_relu", parts)


@register("batchnormrelu2d_module")
def _batchnorm_relu_module():
    parts = []
    shape = (3, 2, 3, 3)
    for training in (True, False):
        m = BatchNormReLU2d(shape[1])
        m.params["gamma"] = 1 + 0.5 * normal((shape[1],), 3)
        m.params["beta"] = 0.5 * normal((shape[1],), 4)
        m.buffers["running_mean"] = normal((shape[1],), 5)
        m.buffers["running_var"] = uniform((shape[1],), 0.5, 2.0, 6)

        def make_input(rng, shape, m=m, training=training):
            return kink_free_bn_input(rng, shape, m.params["gamma"], m.params["beta"], m.buffers["running_mean"],
                                      m.buffers["running_var"], training)
        parts.append(("train" if training else "eval",
                      check_module(m, shape, name="batchnormrelu2d_module", train=training, make_input=make_input)))
    return merge("batchnormrelu2d_module", parts)


# --- pooling --------------------------------------------------------------------------------

POOL_VARIANTS = [  # (label, x shape, kwargs)
    ("k=2", (2, 3, 4, 4), {"kernel_size": 2}),
    ("k=3,s=2,p=1", (2, 2, 5, 5), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("k=(2,3),s=1", (1, 2, 4, 5), {"kernel_size": (2, 3), "stride": 1}),
]


def _pool_case(name, forward, backward):
    parts = []
    for i, (label, shape, kw) in enumerate(POOL_VARIANTS):
        x = distinct(backend.new_host_rng(90 + i), shape)
        parts.append((label, check_op(forward, backward, [x], names=["x"], kwargs=kw, name=name)))
    return merge(name, parts)


register_with("max_pool2d", _pool_case, max_pool2d_forward, max_pool2d_backward)
register_with("avg_pool2d", _pool_case, avg_pool2d_forward, avg_pool2d_backward)
register_with("global_avg_pool", op_case, global_avg_pool_forward, global_avg_pool_backward,
              ("x", (2, 3, 4, 5), 95))


def _distinct_case(name, forward, backward, shape, seed):
    """An op pair on one input of distinct values (no ties for a max to break)."""
    x = distinct(backend.new_host_rng(seed), shape)
    return check_op(forward, backward, [x], names=["x"], name=name)


register_with("global_max_pool", _distinct_case, global_max_pool_forward, global_max_pool_backward, (2, 3, 4, 5), 96)
register_with("channel_pool", _distinct_case, channel_pool_forward, channel_pool_backward, (2, 4, 3, 5), 97)
register_with("max_pool2d_module", module_case, lambda: MaxPool2d(3, stride=2, padding=1), (2, 2, 5, 5),
              make_input=distinct)
register_with("avg_pool2d_module", module_case, lambda: AvgPool2d(3, stride=2, padding=1), (2, 2, 5, 5))
register_with("global_avg_pool_module", module_case, GlobalAvgPool2d, (2, 3, 3, 2))
