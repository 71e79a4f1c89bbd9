"""Solution of exercise 10, by broadcasting to (N, C, H, W).

sigmoid is increasing, so sigmoid(max(u, v)) = max(sigmoid(u), sigmoid(v)): squash both maps,
then fuse. Each of the C*H*W terms sends dout[i] / (C H W) to its winner (the channel on a tie),
and the chain rule through the sigmoid multiplies by s (1 - s), s the squashed winning value:
    da_c[i, c]    = dout[i] / (CHW) * s_c (1 - s_c) * #{(y, x): s_c[i, c] >= s_s[i, y, x]}
    da_s[i, y, x] = dout[i] / (CHW) * s_s (1 - s_s) * #{c: s_s[i, y, x] > s_c[i, c]}
"""
from tinyba2m import backend


def _sigmoid(xp, z):
    """1 / (1 + exp(-z)) without overflow for large |z|."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_max_mean_forward(a_c, a_s):
    xp = backend.array_module(a_c, a_s)
    s_c, s_s = _sigmoid(xp, a_c), _sigmoid(xp, a_s)                # (N, C), (N, H, W)
    c_wins = s_c[:, :, None, None] >= s_s[:, None, :, :]          # (N, C, H, W)
    fused = xp.where(c_wins, s_c[:, :, None, None], s_s[:, None, :, :])
    return fused.mean(axis=(1, 2, 3)), (c_wins, s_c, s_s)


def sigmoid_max_mean_backward(dout, cache):
    c_wins, s_c, s_s = cache
    n, c, h, w = c_wins.shape
    each = (dout / (c * h * w))[:, None, None, None]
    ds_c, ds_s = (c_wins * each).sum(axis=(2, 3)), (~c_wins * each).sum(axis=1)
    return ds_c * s_c * (1 - s_c), ds_s * s_s * (1 - s_s)
