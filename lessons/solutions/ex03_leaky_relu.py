"""Solution of exercise 3: out = x where x > 0, ALPHA * x elsewhere; dx = dout * (1 or ALPHA)."""
from tinyba2m import backend

ALPHA = 0.01


def leaky_relu_forward(x):
    xp = backend.array_module(x)
    slope = xp.where(x > 0, 1.0, ALPHA).astype(x.dtype)
    return x * slope, slope


def leaky_relu_backward(dout, cache):
    return dout * cache
