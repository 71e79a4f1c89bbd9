"""Solution of exercise 2: softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)).

d softplus / dx = exp(x) / (1 + exp(x)) = sigmoid(x), so dx = dout * sigmoid(x).
"""
from tinyba2m import backend
from tinyba2m.ops.activations import stable_sigmoid


def softplus_forward(x):
    xp = backend.array_module(x)
    out = xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
    return out, x


def softplus_backward(dout, cache):
    x = cache
    return dout * stable_sigmoid(x)
