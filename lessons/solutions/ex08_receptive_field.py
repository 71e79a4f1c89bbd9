"""Solution of exercise 8: forward through the stack, dout = one-hot at the centre, backward, dx != 0.

Random weights and input make an accidental exact cancellation (a reached pixel with dx == 0) a
probability-zero event; pixels that cannot reach the output get exactly 0.
"""
from tinyba2m import backend
from tinyba2m.ops.conv import conv2d_backward, conv2d_forward


def receptive_field(dilations, size):
    rng = backend.new_host_rng(0)
    h = rng.standard_normal((1, 1, size, size))                       # (N, C, H, W) = (1, 1, size, size)
    caches = []
    for d in dilations:
        h, cache = conv2d_forward(h, rng.standard_normal((1, 1, 3, 3)), None, 1, d, d)
        caches.append(cache)
    g = backend.get_xp().zeros_like(h)
    g[0, 0, size // 2, size // 2] = 1.0                               # dL/dout: one output pixel
    for cache in reversed(caches):
        g = conv2d_backward(g, cache)[0]                              # dx of each layer
    rows, cols = backend.to_host(g[0, 0] != 0).nonzero()
    return {(int(i), int(j)) for i, j in zip(rows, cols)}
