"""Thin stateful modules over the plain op pairs.

A :class:`Module` keeps

- ``params``  name -> array (learnable),
- ``grads``   name -> array of the same shape, filled (accumulated) by ``backward``,
- ``buffers`` name -> array (state that is saved but not learned, e.g. BN running statistics),
- child modules, registered automatically when assigned as attributes,

and implements ``forward(x)`` (remembering what ``backward`` needs) and ``backward(dout)``
(returning the gradient with respect to the input). ``train()`` / ``eval()`` switch the mode of
the module and all its children.

The cache protocol: ``forward`` ends with ``return self.keep(out, cache)`` and ``backward``
starts with ``cache = self.saved(dout)``, which raises ``RuntimeError("... backward called before
forward")`` if there was no forward pass and a ``ValueError`` naming the module, the expected and
the actual shape if ``dout`` is not shaped like that pass's output. A backward may run twice on
one forward pass (the backward passes only read their cache); composite modules clear their
cache when a forward pass starts, so a failed pass leaves nothing stale behind.
"""
from __future__ import annotations

from collections import OrderedDict

from .. import backend
from ..ops.validation import require_dout


class StateValueError(ValueError):
    """A state entry holds values a model cannot take: not floating point for a float array,
    or NaN / inf."""


def value_problems(name: str, value, like) -> list:
    """Why ``value`` cannot replace the float array ``like`` (empty if it can)."""
    host = backend.to_host(value)
    kind = backend.numpy_module.asarray(host).dtype.kind
    if kind != "f":
        return [f"{name}: expected a floating-point array (the model's is {backend.dtype_of(like)}), got dtype {host.dtype}"]
    bad = int((~backend.numpy_module.isfinite(host)).sum())
    return [f"{name}: {bad} of {host.size} values are not finite (NaN or inf)"] if bad else []


class Module:
    """Base class: subclasses fill ``params`` / ``buffers`` and define forward and backward."""

    def __init__(self):
        object.__setattr__(self, "_children", OrderedDict())
        self.params = OrderedDict()
        self.grads = OrderedDict()
        self.buffers = OrderedDict()
        self.training = True
        self.cache = None
        self.out_shape = None

    # -- composition -------------------------------------------------------------------------
    def __setattr__(self, key, value):
        if isinstance(value, Module):
            children = self.__dict__.get("_children")
            if children is None:
                raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning sub-modules")
            children[key] = value
        object.__setattr__(self, key, value)

    def children(self):
        return list(self._children.items())

    def named_modules(self, prefix: str = ""):
        """(qualified name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def _entries(self, *stores):
        """(qualified name, owning module, store, key) for every entry of the given stores
        (``"params"``, ``"grads"``, ``"buffers"``) of this module and its descendants, module by module."""
        for qual, mod in self.named_modules():
            for store in [getattr(mod, name) for name in stores]:
                for key in list(store):
                    yield (f"{qual}.{key}" if qual else key), mod, store, key

    def named_parameters(self):
        """(qualified name, owning module, local name) for every learnable parameter."""
        return ((name, mod, key) for name, mod, _, key in self._entries("params"))

    def num_parameters(self) -> int:
        return int(sum(store[key].size for _, _, store, key in self._entries("params")))

    # -- the two passes ----------------------------------------------------------------------
    def forward(self, x):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dout):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, x):
        return self.forward(x)

    def keep(self, out, cache=()):
        """Remember ``cache`` (what backward needs) and the shape of ``out``; returns ``out``."""
        self.cache, self.out_shape = cache, tuple(out.shape)
        return out

    def saved(self, dout):
        """The cache of the last forward pass, after checking that there was one and that
        ``dout`` has that pass's output shape (when it was recorded with :meth:`keep`)."""
        if self.cache is None:
            raise RuntimeError(f"{self.label()}: backward called before forward")
        if self.out_shape is not None:
            require_dout(self.label(), dout, self.out_shape)
        return self.cache

    def label(self) -> str:
        """How errors name this module, e.g. ``Linear(4, 3, bias=True)``."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def accumulate_grad(self, name: str, g) -> None:
        """Add ``g`` to ``grads[name]`` (created on first use)."""
        if name in self.grads and self.grads[name] is not None:
            self.grads[name] += g
        else:
            self.grads[name] = g.copy() if hasattr(g, "copy") else g

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Reset every gradient: to zeros, or with ``set_to_none`` to ``None``, so the next backward
        writes fresh arrays instead of adding to zeros (what a training step wants; a parameter
        that backward does not reach then keeps ``None`` and the optimiser skips it)."""
        for _, mod in self.named_modules():
            for key, p in mod.params.items():
                mod.grads[key] = None if set_to_none else backend.array_module(p).zeros_like(p)

    # -- modes -------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        for _, mod in self.named_modules():
            mod.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # -- dtype / device ----------------------------------------------------------------------
    def astype(self, dtype):
        """Cast every parameter, gradient and float buffer to ``dtype`` in place; returns self."""
        for _, _, store, key in self._entries("params", "grads", "buffers"):
            v = store[key]
            if v is not None and hasattr(v, "dtype") and backend.is_float_dtype(v.dtype):
                store[key] = v.astype(dtype)
        return self

    def to_backend(self):
        """Move every parameter, gradient and buffer to the active backend; returns self."""
        for _, _, store, key in self._entries("params", "grads", "buffers"):
            if store[key] is not None:
                store[key] = backend.to_device(backend.to_host(store[key]))
        return self

    # -- saving and loading ------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, object]":
        """Qualified name -> host (NumPy) copy of every parameter and buffer."""
        entries = [(name, store[key]) for name, _, store, key in self._entries("params", "buffers")]
        hosts = backend.to_host_all(v for _, v in entries)     # one device read per dtype, not per entry
        return OrderedDict((name, h) for (name, _), h in zip(entries, hosts))

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays from ``state`` into this module, checking names and shapes first.

        Raises ``ValueError`` listing missing / unexpected names and every shape mismatch, then
        :class:`StateValueError` for every entry of a float parameter or buffer that is not a
        floating-point array or holds NaN or inf, and changes nothing if any check fails. A
        buffer named in a module's ``optional_buffers`` may be absent (a state saved before it
        existed): it keeps its value. A module's ``renamed_state`` maps the names a state saved
        before a rename used to their current names (``{"old": "child.new"}``, relative to it).
        """
        renamed = {f"{qual}.{old}" if qual else old: f"{qual}.{new}" if qual else new
                   for qual, mod in self.named_modules() for old, new in getattr(mod, "renamed_state", {}).items()}
        state = {renamed.get(k, k): v for k, v in state.items()}
        targets = {name: (store, key) for name, _, store, key in self._entries("params", "buffers")}
        optional = {f"{qual}.{key}" if qual else key
                    for qual, mod in self.named_modules() for key in getattr(mod, "optional_buffers", ())}
        problems = []
        missing = [k for k in targets if k not in state and k not in optional]
        unexpected = [k for k in state if k not in targets]
        for what, names in (("missing", missing), ("unexpected", unexpected)):
            if strict and names:
                problems.append(f"{what} entries: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}")
        for k, (store, key) in targets.items():
            if k in state and tuple(state[k].shape) != tuple(store[key].shape):
                problems.append(f"{k}: expected shape {tuple(store[key].shape)}, got {tuple(state[k].shape)}")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state does not match this model: " + "; ".join(problems))
        for k, (store, key) in targets.items():
            if k in state and backend.is_float_dtype(store[key].dtype):
                problems += value_problems(k, state[k], store[key])
        if problems:
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise StateValueError(f"{type(self).__name__}.load_state_dict: refused, nothing loaded: "
                                  + "; ".join(problems[:10]) + more)
        for k, (store, key) in targets.items():
            if k in state:
                old = store[key]
                value = backend.to_host(state[k]).astype(backend.dtype_of(old))
                store[key] = backend.to_device(value) if backend.is_device_array(old) else value
        for _, mod in self.named_modules():  # host mirrors of loaded buffers are out of date
            if hasattr(mod, "state_loaded"):
                mod.state_loaded()

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._children.items():
            sub = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + (")" if len(lines) == 1 else "\n" + "\n".join(lines[1:]) + "\n)")


class OpPair:
    """Base of the classes over one op pair (:class:`OpModule`, :class:`~tinyba2m.nn.loss.Loss`):
    a subclass names its two ops in the class line, ``class ReLU(OpModule, ops=(relu_forward,
    relu_backward))``, which makes them the static methods ``op_forward`` and ``op_backward``;
    ``op_args()`` gives the extra arguments of ``op_forward``."""

    op_forward = None
    op_backward = None

    def __init_subclass__(cls, ops=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if ops is not None:
            cls.op_forward, cls.op_backward = map(staticmethod, ops)

    def op_args(self) -> tuple:
        return ()


class OpModule(Module, OpPair):
    """A module over one op pair. ``forward`` calls ``check_input(x)`` and then
    ``op_forward(x, *params, *self.op_args())`` with the parameters named in ``param_names``
    (``None`` for an absent one, e.g. no bias) and keeps its cache; ``backward`` calls
    ``op_backward(dout, cache)``, which returns ``dx`` (no parameters) or ``(dx, *dparams)``
    in the order of ``param_names``, accumulates each ``dparam`` that is not ``None`` and
    returns ``dx``."""

    param_names: tuple = ()

    def check_input(self, x) -> None:
        """Raise a ``ValueError`` naming this module if ``x`` does not fit it (beyond what the op checks)."""

    def forward(self, x):
        self.cache = None
        self.check_input(x)
        params = [self.params.get(k) for k in self.param_names]
        return self.keep(*self.op_forward(x, *params, *self.op_args()))

    def backward(self, dout):
        grads = self.op_backward(dout, self.saved(dout))
        if not self.param_names:
            return grads
        dx, *dparams = grads
        for key, g in zip(self.param_names, dparams):
            if g is not None:
                self.accumulate_grad(key, g)
        return dx


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse."""

    def __init__(self, *layers: Module):
        super().__init__()
        self.layers = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise ValueError(f"Sequential: item {i} is a {type(layer).__name__}, expected a Module")
            setattr(self, str(i), layer)
            self.layers.append(layer)

    def forward(self, x):
        self.cache = None
        for layer in self.layers:
            x = layer.forward(x)
        return self.keep(x)

    def backward(self, dout):
        self.saved(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]
