"""Solution of exercise 11.

With S = sum_j s_j and s'_j = s_j (1 - s_j):
    dw_i/da_j = N * (delta_ij s'_i / S - s_i s'_j / S^2) = s'_j / S * (N delta_ij - w_i)
so with gw_i = sum_d dout[i, d] x[i, d]:
    da_j = sum_i gw_i dw_i/da_j = s'_j / S * (N gw_j - sum_i gw_i w_i),     dx_i = w_i dout_i
"""
from tinyba2m.ops.activations import stable_sigmoid


def sigmoid_batch_weighting_forward(x, a):
    s = stable_sigmoid(a)
    w = x.shape[0] * s / s.sum()
    return x * w[:, None], (x, s, w)


def sigmoid_batch_weighting_backward(dout, cache):
    x, s, w = cache
    n = x.shape[0]
    gw = (dout * x).sum(axis=1)
    da = s * (1 - s) / s.sum() * (n * gw - (gw * w).sum())
    return dout * w[:, None], da
