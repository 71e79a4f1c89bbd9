"""Sample-wise attention representation (SAR): fuse the branch maps into one scalar per sample.

Two op pairs. ``sar_forward/backward`` is the SAR of BA²M with its ``activation`` option::

    "sigmoid" (default)   a[i] = mean_{c,y,x} sigmoid(max(a_c[i,c], a_ls[i,y,x], a_gs[i,y,x]))   in (0, 1)
    "none"                a[i] = mean_{c,y,x} max(a_c[i,c], a_ls[i,y,x], a_gs[i,y,x])            unbounded

sigmoid is increasing, so sigmoid(max(...)) = max(sigmoid(...)): the sigmoid is applied to each
branch map first and the maps are then fused by ``sar_fusion``; the backward multiplies each
map's gradient by ``s (1 - s)``. ``sar_fusion_forward/backward`` is that fusion, the mean of the
max, described below.

Inputs (any non-empty subset; ``None`` for a branch that is switched off)::

    a_c  (N, C)      channel map A_C, broadcast along H and W
    a_ls (N, H, W)   local spatial map A_LS, broadcast along C
    a_gs (N, H, W)   global spatial map A_GS, broadcast along C

    a[i] = mean_{c, y, x} max(a_c[i, c], a_ls[i, y, x], a_gs[i, y, x])          -> a (N,)

Backward routes the gradient of each broadcast element to the branch that won its max; on an
exact tie the first branch in the order (C, LS, GS) wins.

The trick (no (N, C, H, W) array is ever built). Let ``s[p] = max(a_ls[p], a_gs[p])`` be the
spatial winner at pixel p (LS on a tie) and ``k[p] = #{c : a_c[c] < s[p]}`` the number of channels
that pixel beats (a channel equal to s[p] wins the tie, so it is not counted). Then, summed over
the channels of one pixel,

    sum_c max(a_c[c], s[p]) = s[p] * k[p] + (sum of the C - k[p] largest a_c)
                            = s[p] * k[p] + T - prefix[k[p]],

with ``prefix`` the prefix sums of a_c sorted ascending and ``T`` its total. ``k[p]`` is a binary
search of s[p] in the sorted a_c, done for all pixels of all samples at once (``log2 C`` steps).
Gradients, with ``D = C * H * W``::

    da_s[p]           = da * k[p] / D          (to LS or GS, whichever gave s[p])
    da_c[c of rank j] = da * #{p : k[p] <= j} / D    (a histogram of k, then a cumulative sum)

Cost per sample: O(C log C + HW log C) instead of O(C H W). With no channel map the SAR is the
mean of ``s``; with no spatial map it is the mean of ``a_c``.

``sar_fusion_reference_forward/backward`` build the broadcast explicitly; they are the readable
definition, used by the tests to check the fast version.
"""
from __future__ import annotations

from .. import backend
from ..nn.module import Module
from ..ops.activations import stable_sigmoid
from ..ops.validation import require_dout, require_float, require_ndim

OP = "sar_fusion"


def _check(a_c, a_ls, a_gs, op=OP):
    if a_c is None and a_ls is None and a_gs is None:
        raise ValueError(f"{op}: needs at least one branch map, got a_c, a_ls and a_gs all None")
    n = None
    if a_c is not None:
        require_ndim(op, "a_c", a_c, 2, "(N, C)")
        require_float(op, "a_c", a_c)
        n = a_c.shape[0]
    hw = None
    for name, m in (("a_ls", a_ls), ("a_gs", a_gs)):
        if m is None:
            continue
        require_ndim(op, name, m, 3, "(N, H, W)")
        require_float(op, name, m)
        if n is not None and m.shape[0] != n:
            raise ValueError(f"{op}: {name} has batch size {m.shape[0]} but the other maps have {n}")
        if hw is not None and tuple(m.shape[1:]) != hw:
            raise ValueError(f"{op}: a_ls and a_gs must have the same (H, W), got {hw} and {tuple(m.shape[1:])}")
        n, hw = m.shape[0], tuple(m.shape[1:])


def count_below(sorted_rows, values):
    """``k[i, j] = #{c : sorted_rows[i, c] < values[i, j]}`` — a binary search of every value in
    its sample's ascending row, for all samples at once. sorted_rows (N, C), values (N, K).

    Branch-free form: ``k`` grows by ``step`` (C's highest power of two, then halving) whenever
    the row still has ``step`` more entries below the value: ``sorted_rows[k + step - 1] < value``.
    """
    xp = backend.array_module(sorted_rows, values)
    c = sorted_rows.shape[1]
    flat = sorted_rows.reshape(-1)
    row_start = c * xp.arange(sorted_rows.shape[0])[:, None]          # gather from the flat rows
    k = xp.zeros(values.shape, dtype=xp.int64)
    step = 1 << (c.bit_length() - 1)
    while step:
        probe = xp.take(flat, row_start + xp.minimum(k + (step - 1), c - 1))
        k += step * ((probe < values) & (k + step <= c))
        step >>= 1
    return k


def sar_fusion_forward(a_c=None, a_ls=None, a_gs=None):
    """SAR ``a (N,)`` from the maps present (see the module docstring). Returns (a, cache)."""
    _check(a_c, a_ls, a_gs)
    xp = backend.array_module(a_c, a_ls, a_gs)
    cache = {"present": (a_c is not None, a_ls is not None, a_gs is not None), "ls_wins": None}
    if a_ls is not None and a_gs is not None:      # spatial winner s, LS on a tie
        cache["ls_wins"] = a_ls >= a_gs
        s = xp.where(cache["ls_wins"], a_ls, a_gs)
    else:
        s = a_ls if a_ls is not None else a_gs
    if s is None:                                  # channel map only: constant along H, W
        cache["shape"] = a_c.shape
        return a_c.mean(axis=1), cache
    n, h, w = s.shape
    flat = s.reshape(n, h * w)
    if a_c is None:                                # spatial maps only
        cache["shape"] = (n, 1, h, w)
        return flat.mean(axis=1), cache
    c = a_c.shape[1]
    order = xp.argsort(a_c, axis=1)
    srt = xp.take_along_axis(a_c, order, axis=1)
    prefix = xp.concatenate([xp.zeros((n, 1), dtype=srt.dtype), xp.cumsum(srt, axis=1)], axis=1)  # (N, C+1)
    k = count_below(srt, flat)                     # (N, HW) channels beaten by each pixel
    above = xp.take(prefix.reshape(-1), (c + 1) * xp.arange(n)[:, None] + k)   # prefix[i, k[i, p]]
    per_pixel = flat * k + (prefix[:, -1:] - above)
    cache.update(shape=(n, c, h, w), k=k, order=order)
    return (per_pixel.sum(axis=1) / (c * h * w)).astype(s.dtype, copy=False), cache


def _route(ds, cache):
    """Split the gradient of the spatial winner between LS and GS (LS on a tie)."""
    _, have_ls, have_gs = cache["present"]
    if have_ls and have_gs:
        return ds * cache["ls_wins"], ds * ~cache["ls_wins"]
    return (ds, None) if have_ls else (None, ds)


def _histogram(xp, idx, size):
    """Counts of each value of ``idx`` in ``[0, size)``. NumPy: ``bincount``; on the GPU a scatter-add,
    as CuPy's ``bincount`` reads the largest index back to the host first."""
    if xp is backend.numpy_module:
        return xp.bincount(idx, minlength=size)
    hist = xp.zeros(size, dtype=xp.int64)
    xp.add.at(hist, idx, 1)
    return hist


def sar_fusion_backward(da, cache):
    """da (N,) -> (da_c (N, C), da_ls (N, H, W), da_gs (N, H, W)); ``None`` for an absent map."""
    require_dout(OP, da, (cache["shape"][0],))
    xp = backend.array_module(da)
    have_c, have_ls, have_gs = cache["present"]
    if not (have_ls or have_gs):
        n, c = cache["shape"]
        return xp.broadcast_to((da / c)[:, None], (n, c)).copy(), None, None
    n, c, h, w = cache["shape"]
    if not have_c:
        ds = xp.broadcast_to((da / (h * w))[:, None, None], (n, h, w)).copy()
        return (None,) + _route(ds, cache)
    k, order = cache["k"], cache["order"]
    scale = (da / (c * h * w))[:, None]                              # (N, 1)
    ds = (k * scale).reshape(n, h, w).astype(da.dtype, copy=False)
    # the channel of rank j wins at every pixel with k <= j: a histogram of k, then a cumulative sum
    hist = _histogram(xp, (k + (c + 1) * xp.arange(n)[:, None]).ravel(), n * (c + 1)).reshape(n, c + 1)
    wins = xp.cumsum(hist, axis=1)[:, :c]
    da_c = xp.empty((n, c), dtype=da.dtype)
    da_c[xp.arange(n)[:, None], order] = wins * scale
    return (da_c,) + _route(ds, cache)


# -- the readable definition: build the (N, branches, C, H, W) broadcast ---------------------------
def sar_fusion_reference_forward(a_c=None, a_ls=None, a_gs=None, hw=None):
    """The SAR by brute force. ``hw`` gives (H, W) when only the channel map is present."""
    _check(a_c, a_ls, a_gs, op="sar_fusion_reference")
    xp = backend.array_module(a_c, a_ls, a_gs)
    spatial = a_ls if a_ls is not None else a_gs
    n = (a_c if a_c is not None else spatial).shape[0]
    c = a_c.shape[1] if a_c is not None else 1
    h, w = tuple(spatial.shape[1:]) if spatial is not None else (hw or (1, 1))
    maps = []                                      # in tie order C, LS, GS: argmax picks the first
    if a_c is not None:
        maps.append(xp.broadcast_to(a_c[:, :, None, None], (n, c, h, w)))
    for m in (a_ls, a_gs):
        if m is not None:
            maps.append(xp.broadcast_to(m[:, None, :, :], (n, c, h, w)))
    stack = xp.stack(maps, axis=1)                 # (N, B, C, H, W)
    winner = stack.argmax(axis=1)                  # (N, C, H, W)
    a = stack.max(axis=1).mean(axis=(1, 2, 3))
    return a, ((a_c is not None, a_ls is not None, a_gs is not None), winner, (n, c, h, w))


def sar_fusion_reference_backward(da, cache):
    """Each broadcast element sends ``da / (C H W)`` to its winning branch."""
    present, winner, (n, c, h, w) = cache
    require_dout("sar_fusion_reference", da, (n,))
    xp = backend.array_module(da)
    each = xp.broadcast_to((da / (c * h * w))[:, None, None, None], (n, c, h, w))
    grads, slot = [], 0
    for axes, have in zip(((2, 3), (1,), (1,)), present):
        if not have:
            grads.append(None)
            continue
        grads.append((each * (winner == slot)).sum(axis=axes))
        slot += 1
    return tuple(grads)


# -- the SAR of BA²M: an optional sigmoid on each map, then the fusion -----------------------------
SAR_ACTIVATIONS = ("sigmoid", "none")


def sar_forward(a_c=None, a_ls=None, a_gs=None, activation="sigmoid"):
    """SAR ``a (N,)`` of the maps present, ``activation`` "sigmoid" (bounded to (0, 1), the default)
    or "none" (the raw mean of the max). Returns (a, cache)."""
    if activation not in SAR_ACTIVATIONS:
        raise ValueError(f"sar: activation must be one of {SAR_ACTIVATIONS}, got {activation!r}")
    squashed = None                                # the maps the fusion gets, when not the raw ones
    _check(a_c, a_ls, a_gs, op="sar")              # the raw maps, before the sigmoid makes them float
    if activation == "sigmoid":
        squashed = tuple(None if m is None else stable_sigmoid(m) for m in (a_c, a_ls, a_gs))
    a, cache = sar_fusion_forward(*(squashed or (a_c, a_ls, a_gs)))
    return a, (cache, squashed)


def sar_backward(da, cache):
    """da (N,) -> (da_c (N, C), da_ls (N, H, W), da_gs (N, H, W)); ``None`` for an absent map."""
    fusion_cache, squashed = cache
    require_dout("sar", da, (fusion_cache["shape"][0],))
    grads = sar_fusion_backward(da, fusion_cache)
    if squashed is None:
        return grads
    return tuple(None if g is None else g * s * (1 - s) for g, s in zip(grads, squashed))


class SAR(Module):
    """The SAR as a child module of BA2M over ``sar_forward``/``sar_backward``:
    ``forward(a_c, a_ls, a_gs) -> a (N,)``, ``backward(da) -> (da_c, da_ls, da_gs)``."""

    def __init__(self, activation: str = "sigmoid"):
        super().__init__()
        if activation not in SAR_ACTIVATIONS:
            raise ValueError(f"SAR: activation must be one of {SAR_ACTIVATIONS}, got {activation!r}")
        self.activation = activation

    def forward(self, a_c=None, a_ls=None, a_gs=None):
        self.cache = None
        return self.keep(*sar_forward(a_c, a_ls, a_gs, activation=self.activation))

    def backward(self, da):
        return sar_backward(da, self.saved(da))

    def extra_repr(self):
        return f"activation={self.activation!r}"
