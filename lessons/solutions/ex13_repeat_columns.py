"""Solution of exercise 13: gather forward, scatter-add backward, on whichever backend x lives.

dx[:, IDX] += dout would add column 0 and column 2 only once each (a repeated index is written,
not accumulated); backend.scatter_add (xp.add.at) accumulates. Transposing puts the repeated
axis first, so the index is the plain array IDX.
"""
from tinyba2m import backend

IDX = [0, 2, 2, 1, 0]


def repeat_columns_forward(x):
    xp = backend.array_module(x)
    idx = xp.asarray(IDX)
    return x[:, idx], (x.shape, idx)


def repeat_columns_backward(dout, cache):
    shape, idx = cache
    xp = backend.array_module(dout)
    dxt = xp.zeros((shape[1], shape[0]), dtype=dout.dtype)     # (D, N)
    backend.scatter_add(dxt, idx, dout.T)                      # rows idx[k] += dout[:, k]
    return dxt.T
