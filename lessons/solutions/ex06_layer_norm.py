"""Solution of exercise 6: layer norm, the batch-norm derivation applied along each row.

With s_n = 1 / sqrt(var_n + EPS), xhat = (x - mean_n) * s_n and g = dout * gamma (the gradient
reaching xhat), over the D features of each row:
    dx = s_n / D * (D * g - sum_d g - xhat * sum_d (g * xhat))
    dgamma = sum_n dout * xhat,   dbeta = sum_n dout
"""
from tinyba2m import backend

EPS = 1e-5


def layer_norm_forward(x, gamma, beta):
    xp = backend.array_module(x)
    mu = x.mean(axis=1, keepdims=True)                  # (N, 1)
    xc = x - mu
    s = 1.0 / xp.sqrt((xc * xc).mean(axis=1, keepdims=True) + EPS)
    xhat = xc * s
    return xhat * gamma + beta, (xhat, s, gamma)


def layer_norm_backward(dout, cache):
    xhat, s, gamma = cache
    d = xhat.shape[1]
    g = dout * gamma
    dx = s / d * (d * g - g.sum(axis=1, keepdims=True) - xhat * (g * xhat).sum(axis=1, keepdims=True))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)
