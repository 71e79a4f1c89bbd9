"""Solution of exercise 9: scaled dot-product attention.

    S = q k^T / sqrt(d)   (N, L, M)      P = softmax over m      out = P v   (N, L, e)
    dv = P^T dout         dP = dout v^T
    dS = P * (dP - sum_m(dP * P))        (the softmax Jacobian, row by row)
    dq = dS k / sqrt(d)   dk = dS^T q / sqrt(d)
"""
import math

from tinyba2m import backend
from tinyba2m.ops.activations import softmax


def attention_forward(q, k, v):
    xp = backend.array_module(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[2])
    p = softmax(xp.matmul(q, k.transpose(0, 2, 1)) * scale, axis=2)
    return xp.matmul(p, v), (q, k, v, p, scale)


def attention_backward(dout, cache):
    q, k, v, p, scale = cache
    xp = backend.array_module(dout)
    dv = xp.matmul(p.transpose(0, 2, 1), dout)
    dp = xp.matmul(dout, v.transpose(0, 2, 1))
    ds = p * (dp - (dp * p).sum(axis=2, keepdims=True))
    return xp.matmul(ds, k) * scale, xp.matmul(ds.transpose(0, 2, 1), q) * scale, dv
