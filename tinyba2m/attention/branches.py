"""The three intra-sample attention branches of BA²M, as modules with hand-derived backward passes.

With ``h = max(C // reduction, 4)`` and ``h' = max(C // nonlocal_reduction, 4)``:

ChannelBranch         x (N, C, H, W) -> A_C (N, C)
    A_C = BN1d(FC_1(ReLU(FC_0(GAP(x)))))            FC_0: C -> h, FC_1: h -> C; BN over the batch

LocalSpatialBranch    x (N, C, H, W) -> A_LS (N, 1, H, W)
    A_LS = BN(conv1x1_{h->1}(ReLU(BN(conv3x3_{h->h, dilation d, padding d}(ReLU(BN(conv1x1_{C->h}(x))))))))

GlobalSpatialBranch   x (N, C, H, W) -> A_GS (N, 1, H, W)     (embedded-Gaussian non-local block)
    theta, phi, g = 1x1 convs C -> h'; keys phi and values g max-pooled by ``subsample``
    (M = H'W' key positions; no pooling when H or W < subsample), queries: all HW positions
    A_GS = BN(W_z(softmax_M(theta^T phi) g^T))       W_z: 1x1 conv h' -> 1
    Default (``value_projection_first=True``) computes the same numbers more cheaply by
    projecting the pooled values to one channel first: W_z(P G) = P (W_z G), since every row
    of P sums to one (so the bias passes through unchanged). The attention product then has
    one value channel instead of h'. ``False`` runs the plain form (for tests and lessons).
"""
from __future__ import annotations

from .. import backend
from ..nn import BatchNorm1d, BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, Sequential
from ..nn.module import Module
from ..ops.conv import conv2d_backward, conv2d_forward
from ..ops.validation import require_batch, require_positive_int
from .nonlocal_attention import nonlocal_attention_backward, nonlocal_attention_forward


def hidden_width(channels: int, reduction: int) -> int:
    """``max(channels // reduction, 4)``: the bottleneck width of the branches."""
    return max(channels // reduction, 4)


def check_input(label: str, x, channels: int, allow_empty: bool = False) -> None:
    """x must be a 4-D (N, channels, H, W) array with N >= 1 (N = 0 too with ``allow_empty``);
    a ValueError naming ``label`` otherwise."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4:
        raise ValueError(f"{label}: expected a 4-D input (N, C, H, W) with C = {channels}, got shape {shape}")
    if shape[1] != channels:
        raise ValueError(f"{label}: built for {channels} channels, got an input with {shape[1]} (input shape {shape})")
    if not allow_empty:
        require_batch(label, x)


class _AttentionModule(Module):
    """Base of the attention modules over (N, channels, H, W) inputs (BA²M, CBAM, BAM): errors
    name them ``Name(channels)``."""

    def label(self) -> str:
        return f"{type(self).__name__}({self.channels})"

    def start_forward(self, x) -> None:
        """Drop the last forward pass's cache and check that ``x`` is (N, channels, H, W), N >= 1."""
        self.cache = None
        check_input(self.label(), x, self.channels)


def parameter_names(owner: Module, layers, key: str) -> tuple:
    """``"<child name>.<key>"`` of each of ``layers`` (children of ``owner``), found by identity, so
    the names follow the layers wherever they stand (``"3.b"`` in a Sequential, ``"g.b"``)."""
    where = {id(m): q for q, m in owner.named_modules()}
    return tuple(f"{where[id(layer)]}.{key}" for layer in layers)


class ZeroGradients:
    """What a branch declares beside its layers: ``bias_before_bn`` (the biases a following batch
    norm cancels in training: the batch mean removes them) and ``output_shift`` (the shift of its
    last BN, which moves its whole map by one amount). ``zero_gradient_parameters`` names those
    whose gradient is exactly zero for the last forward pass; ``shift_free``: the caller ignores a
    common shift of the map (see ``BA2M.zero_gradient_parameters``)."""

    bias_before_bn: tuple = ()
    output_shift: str = ""

    def zero_gradient_parameters(self, shift_free: bool = False) -> tuple:
        return (self.bias_before_bn if self.training else ()) + ((self.output_shift,) if shift_free else ())


class _SequentialBranch(ZeroGradients, Sequential):
    """A branch that is a chain of layers: checks its input (N, channels, H, W), then runs them."""

    def forward(self, x):
        self.cache = None
        check_input(f"{type(self).__name__}({self.channels})", x, self.channels)
        return super().forward(x)


class ChannelBranch(_SequentialBranch):
    """A_C (N, C): GAP -> FC C->h -> ReLU -> FC h->C -> BN1d(C)."""

    def __init__(self, channels: int, reduction: int = 16):
        require_positive_int("ChannelBranch", "channels", channels)
        require_positive_int("ChannelBranch", "reduction", reduction)
        h = hidden_width(channels, reduction)
        fc0, fc1, bn = Linear(channels, h), Linear(h, channels), BatchNorm1d(channels)   # drawn in this order
        super().__init__(GlobalAvgPool2d(), fc0, ReLU(), fc1, bn)
        self.channels, self.hidden = channels, h
        self.bias_before_bn = parameter_names(self, (fc1,), "b")
        self.output_shift, = parameter_names(self, (bn,), "beta")

    def extra_repr(self):
        return f"{self.channels}, hidden={self.hidden}"


class LocalSpatialBranch(_SequentialBranch):
    """A_LS (N, 1, H, W): 1x1 conv C->h, BN, ReLU, ``dilated`` x (dilated 3x3 conv h->h, BN, ReLU),
    1x1 conv h->1, BN. BA²M's has one dilated conv; BAM's spatial branch (a subclass) two."""

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4, dilated: int = 1):
        for name, value in (("channels", channels), ("reduction", reduction), ("dilation", dilation),
                            ("dilated", dilated)):
            require_positive_int(type(self).__name__, name, value)
        h = hidden_width(channels, reduction)
        convs = [Conv2d(channels, h, 1)] + [Conv2d(h, h, 3, padding=dilation, dilation=dilation)
                                            for _ in range(dilated)] + [Conv2d(h, 1, 1)]
        layers = []
        for conv in convs[:-1]:
            layers += [conv, BatchNorm2d(h), ReLU()]
        bn = BatchNorm2d(1)
        super().__init__(*layers, convs[-1], bn)
        self.channels, self.hidden, self.dilation, self.dilated = channels, h, dilation, dilated
        self.bias_before_bn = parameter_names(self, convs, "b")       # every conv feeds a BN
        self.output_shift, = parameter_names(self, (bn,), "beta")

    def extra_repr(self):
        return f"{self.channels}, hidden={self.hidden}, dilation={self.dilation}"


class GlobalSpatialBranch(ZeroGradients, Module):
    """A_GS (N, 1, H, W): non-local attention with subsampled keys/values, W_z, BN (see above).

    The three embeddings theta, phi, g are Conv2d children (their parameters, names and
    gradients are the usual ones), but they are evaluated as ONE 1x1 convolution with their
    weights stacked (C -> 3h'), and keys and values are pooled in one call: fewer passes over
    the input and its gradient.

    The (N, HW, M) attention matrix is written into a workspace this module keeps from one
    forward pass to the next (``_attention_workspace``; why: docs/BA2M.md section 7). The
    module's cache refers to it, and only the latest forward pass's cache is ever used, so the
    reuse is safe.
    """

    def __init__(self, channels: int, nonlocal_reduction: int = 8, subsample: int = 2, value_projection_first: bool = True):
        super().__init__()
        for name, value in (("channels", channels), ("nonlocal_reduction", nonlocal_reduction), ("subsample", subsample)):
            require_positive_int("GlobalSpatialBranch", name, value)
        k = hidden_width(channels, nonlocal_reduction)
        self.channels, self.hidden, self.subsample = channels, k, subsample
        self.value_projection_first = bool(value_projection_first)
        self.theta, self.phi, self.g = Conv2d(channels, k, 1), Conv2d(channels, k, 1), Conv2d(channels, k, 1)
        self.pool = MaxPool2d(subsample, subsample)      # keys and values together
        self.w_z = Conv2d(k, 1, 1)
        self.bn = BatchNorm2d(1)
        self._workspace = None
        self.bias_before_bn = ("g.b", "w_z.b")   # the values (the attention rows sum to 1) and W_z feed the BN
        self.output_shift = "bn.beta"

    def _attention_workspace(self, like, shape):
        """A C-contiguous array of ``shape`` and ``like``'s dtype and array module: a view of the
        flat buffer this module keeps, reallocated only when too small or of another kind."""
        xp = backend.array_module(like)
        size = shape[0] * shape[1] * shape[2]
        buf = self._workspace
        if buf is None or buf.size < size or buf.dtype != like.dtype or backend.array_module(buf) is not xp:
            buf = self._workspace = xp.empty(size, dtype=like.dtype)
        return buf[:size].reshape(shape)

    def forward(self, x):
        self.cache = None
        check_input(f"GlobalSpatialBranch({self.channels})", x, self.channels)
        xp = backend.array_module(x)
        n, _, h, w = x.shape
        k = self.hidden
        convs = (self.theta, self.phi, self.g)
        emb, emb_cache = conv2d_forward(x, xp.concatenate([c.params["w"] for c in convs]),
                                        xp.concatenate([c.params["b"] for c in convs]))       # (N, 3h', H, W)
        pool = self.subsample > 1 and h >= self.subsample and w >= self.subsample
        keys_values = self.pool.forward(emb[:, k:]) if pool else emb[:, k:]                 # (N, 2h', H', W')
        key_hw = tuple(keys_values.shape[2:])
        theta = emb[:, :k].reshape(n, k, h * w)
        phi = keys_values[:, :k].reshape(n, k, -1)
        g = keys_values[:, k:]
        workspace = self._attention_workspace(theta, (n, h * w, phi.shape[2]))
        if self.value_projection_first:
            v = self.w_z.forward(g).reshape(n, 1, -1)                      # (N, 1, M)
            z, att = nonlocal_attention_forward(theta, phi, v, workspace)  # (N, HW, 1)
            z = z.reshape(n, 1, h, w)
        else:
            y, att = nonlocal_attention_forward(theta, phi, g.reshape(n, k, -1), workspace)   # (N, HW, h')
            z = self.w_z.forward(y.transpose(0, 2, 1).reshape(n, k, h, w))
        return self.keep(self.bn.forward(z), (att, emb_cache, pool, (n, h, w), key_hw))

    def backward(self, dout):
        att, emb_cache, pool, (n, h, w), key_hw = self.saved(dout)
        xp = backend.array_module(dout)
        k = self.hidden
        dz = self.bn.backward(dout)
        if self.value_projection_first:
            dtheta, dphi, dv = nonlocal_attention_backward(dz.reshape(n, h * w, 1), att)
            dg = self.w_z.backward(dv.reshape((n, 1) + key_hw))
        else:
            dy = self.w_z.backward(dz).reshape(n, k, h * w).transpose(0, 2, 1)
            dtheta, dphi, dg = nonlocal_attention_backward(dy, att)
            dg = dg.reshape((n, k) + key_hw)
        dkv = xp.concatenate([dphi.reshape((n, k) + key_hw), dg], axis=1)
        if pool:
            dkv = self.pool.backward(dkv)
        demb = xp.concatenate([dtheta.reshape(n, k, h, w), dkv], axis=1)
        dx, dw, db = conv2d_backward(demb, emb_cache)
        for i, conv in enumerate((self.theta, self.phi, self.g)):
            conv.accumulate_grad("w", dw[i * k:(i + 1) * k])
            conv.accumulate_grad("b", db[i * k:(i + 1) * k])
        return dx

    def key_positions(self):
        """M, the number of key positions of the last forward pass (None before any)."""
        return None if self.cache is None else self.cache[4][0] * self.cache[4][1]

    def zero_gradient_parameters(self, shift_free: bool = False) -> tuple:
        """Besides the BN-cancelled biases: the key bias (it adds the same amount to every key score
        of a query), and theta and phi entirely when there is one key position (softmax of one score is 1)."""
        zero = ("phi.b",)
        if self.key_positions() == 1:
            zero += ("theta.w", "theta.b", "phi.w")
        return zero + super().zero_gradient_parameters(shift_free)

    def extra_repr(self):
        return (f"{self.channels}, hidden={self.hidden}, subsample={self.subsample}, "
                f"value_projection_first={self.value_projection_first}")
