"""Solution of exercise 1: out[n, d] = s[n] * x[n, d].

ds[n] = sum_d dout[n, d] * x[n, d]   (s is broadcast along axis 1, so its gradient sums over it)
dx[n, d] = dout[n, d] * s[n]
"""


def row_scale_forward(x, s):
    return x * s[:, None], (x, s)


def row_scale_backward(dout, cache):
    x, s = cache
    return dout * s[:, None], (dout * x).sum(axis=1)
