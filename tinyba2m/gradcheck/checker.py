"""Check a backward pass against finite differences — on an op pair or on a module.

``check_op(forward, backward, inputs)`` and ``check_module(module, input_shape)`` both return a
:class:`CheckResult`: the worst relative error over every checked gradient, with the error of
each one by name. Everything is cast to float64 first.

The scalar that is differentiated is ``L = sum(out * G)`` for a fixed random ``G``, so
``dL/dout = G`` is what is fed to ``backward``.

``method="full"`` walks every coordinate (exact, slow for big tensors); ``"direction"`` compares
``<grad, v>`` with the directional derivative along random directions ``v`` (two forward calls
per direction); ``"auto"`` walks tensors up to ``max_full`` elements and samples directions for
bigger ones.

A NaN or inf anywhere (in a gradient, in the forward's output, in an error) is a FAIL, named as
such: every comparison here treats a non-finite error as above any tolerance (Python's ``max``
and ``<=`` would quietly skip a NaN). A gradient or an output that is not float64 for float64
inputs is noted on its entry (``notes``): the check runs in float64, so float32 rounding alone
fails it.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

from .. import backend
from .numeric import directional_derivative, numerical_gradient, relative_error

DEFAULT_TOLERANCE = 1e-6


def check_tolerance(tolerance) -> float:
    """``tolerance`` as a float; a ValueError unless it is a finite number > 0 (a NaN, negative or
    zero tolerance would fail every check, an infinite one pass every check)."""
    try:
        tol = float(tolerance)
    except (TypeError, ValueError):
        tol = math.nan
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"the tolerance must be a finite number > 0, got {tolerance!r}")
    return tol


def format_error(value) -> str:
    """An error for a table: ``NaN``, ``inf`` or ``1.23e-07``."""
    value = float(value)
    return "NaN" if math.isnan(value) else f"{value:.2e}"


def within(value, tolerance) -> bool:
    """True when ``value`` is a finite number ``<= tolerance``; a NaN or inf never is."""
    value = float(value)
    return math.isfinite(value) and value <= tolerance


def worst_of(values) -> float:
    """The largest of ``values``: NaN if any is NaN (``max`` would skip a NaN that is not first),
    else inf if any is infinite (an error of -inf is no better); 0.0 for none."""
    values = [float(v) for v in values]
    if any(math.isnan(v) for v in values):
        return math.nan
    if any(math.isinf(v) for v in values):
        return math.inf
    return max(values, default=0.0)


@dataclass
class CheckResult:
    name: str
    errors: dict = field(default_factory=dict)  # gradient name -> relative error
    tolerance: float = DEFAULT_TOLERANCE
    shapes: dict = field(default_factory=dict)  # gradient name -> shape of the checked array (for reports)
    notes: dict = field(default_factory=dict)   # gradient name (or "output") -> why it fails, beyond the number

    @property
    def worst(self) -> float:
        """The largest error; NaN if any error is NaN."""
        return worst_of(self.errors.values())

    @property
    def passed(self) -> bool:
        """At least one gradient checked and every error a finite number within the tolerance."""
        return bool(self.errors) and not self.failed()

    def failed(self) -> dict:
        """The gradients whose error is above the tolerance or not finite (NaN, inf): name -> error."""
        return {k: v for k, v in self.errors.items() if not within(v, self.tolerance)}

    def describe(self, key: str) -> str:
        """``"w=1.23e-02"`` (``"w=NaN"``, ``"w=inf"``), with the note on ``key`` in brackets if any."""
        text = f"{key}={format_error(self.errors[key])}" if key in self.errors else key
        return text + (f" ({self.notes[key]})" if self.notes.get(key) else "")

    def failure_summary(self) -> str:
        """What a FAIL row shows: every failed gradient with its error and note, then the notes
        that belong to no gradient (e.g. the forward's output dtype)."""
        parts = [self.describe(k) for k in self.failed()]
        parts += [v for k, v in self.notes.items() if k not in self.errors and v]
        return ", ".join(parts) if parts or self.errors else "no gradient checked"

    def __str__(self) -> str:
        detail = ", ".join(self.describe(k) for k in self.errors)
        extra = "".join(f"; {v}" for k, v in self.notes.items() if k not in self.errors and v)
        return (f"{self.name}: worst {format_error(self.worst)} (tol {self.tolerance:.0e}) "
                f"{'PASS' if self.passed else 'FAIL'} [{detail}{extra}]")


def merge_results(name: str, parts) -> CheckResult:
    """One result holding every ``(label, result)`` part's errors (and shapes, notes) as
    ``"<grad>(<label>)"`` (just ``"<grad>"`` for an empty label)."""
    out = CheckResult(name)
    for label, res in parts:
        for merged, part in ((out.errors, res.errors), (out.shapes, res.shapes), (out.notes, res.notes)):
            merged.update({f"{k}({label})" if label else k: v for k, v in part.items()})
    return out


def _random_like(rng, a):
    return backend.array_module(a).asarray(rng.standard_normal(a.shape))


def _nonfinite(arr) -> tuple[int, int]:
    """(NaN count, inf count) of ``arr`` (read on the host)."""
    np = backend.numpy_module
    host = np.asarray(backend.to_host(arr), dtype=np.float64)
    return int(np.isnan(host).sum()), int(np.isinf(host).sum())


def _nonfinite_note(arr, what: str):
    """``"<what> holds 2 NaN, 1 inf"``, or None when ``arr`` is all finite."""
    nans, infs = _nonfinite(arr)
    counts = [f"{n} {kind}" for n, kind in ((nans, "NaN"), (infs, "inf")) if n]
    return f"{what} holds {', '.join(counts)}" if counts else None


def _dtype_note(arr):
    """``"returned float32: the check runs in float64"`` for an array that is not float64, else None."""
    dtype = getattr(arr, "dtype", None)
    if dtype is None or backend.numpy_module.dtype(dtype) == backend.float64:
        return None
    return f"returned {backend.numpy_module.dtype(dtype)}: the check runs in float64"


def _join(*notes):
    return "; ".join(n for n in notes if n) or None


def _compare(analytic, f_of_x, x, dout, rng, method, max_full, n_directions, h):
    """(error, note) between ``analytic`` and the numerical gradient of f_of_x at x. A NaN in
    ``analytic`` makes the error NaN, an inf (and no NaN) inf; the note names it."""
    nans, infs = _nonfinite(analytic)
    if nans or infs:
        return (math.nan if nans else math.inf), _nonfinite_note(analytic, "the gradient")
    if method == "full" or (method == "auto" and x.size <= max_full):
        num = numerical_gradient(f_of_x, x, dout, h=h)
        err = relative_error(analytic, num)
        return err, (None if math.isfinite(err) else _nonfinite_note(num, "the finite difference"))
    errors = []
    for _ in range(n_directions):
        v = _random_like(rng, x)
        num = directional_derivative(f_of_x, [x], [v], dout, h=h)
        ana = float((analytic * v).sum())
        errors.append(abs(ana - num) / max(abs(ana) + abs(num), 1e-30))
        if not math.isfinite(num):
            return math.nan if math.isnan(num) else math.inf, f"the finite difference is {format_error(num)}"
    return worst_of(errors), None


def _input_names(forward, count: int) -> list:
    """The names of the first ``count`` positional parameters of ``forward`` (``x``, ``w``, ...;
    ``<args>0``, ``<args>1``... for those that fill a ``*args``); ``input0``... if it has no
    signature to read."""
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:count]
    star = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), None)
    if star is not None or not params:
        names += [f"{star or 'input'}{i}" for i in range(count - len(names))]
    names += [f"input{i}" for i in range(len(names), count)]
    return names


def check_op(forward, backward, inputs, names=None, seed=0, tolerance=DEFAULT_TOLERANCE,
             method="auto", max_full=4096, n_directions=4, h=1e-6, name="op", kwargs=None,
             check=None) -> CheckResult:
    """Check ``backward`` of an op pair against finite differences.

    ``forward(*inputs, **kwargs) -> (out, cache)``; ``backward(dout, cache)`` returns one gradient
    (a single input) or a tuple with one gradient per input (``None`` for a non-differentiable
    one). ``check`` optionally restricts the check to the inputs with these indices. ``names``
    defaults to the forward's parameter names (``x``, ``w``, ...).
    """
    tolerance = check_tolerance(tolerance)
    kwargs = kwargs or {}
    rng = backend.new_host_rng(seed)
    xs = [backend.array_module(a).asarray(a).astype(backend.float64) for a in inputs]
    names = list(names) if names is not None else _input_names(forward, len(xs))
    out, cache = forward(*xs, **kwargs)
    dout = _random_like(rng, out)
    grads = backward(dout, cache)
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) < len(xs):
        raise ValueError(f"{name}: backward returned {len(grads)} gradients for {len(xs)} inputs")
    result = CheckResult(name, tolerance=tolerance)
    _note_output(result, out)
    for i, (x, g) in enumerate(zip(xs, grads)):
        if g is None or (check is not None and i not in check):
            continue
        if tuple(g.shape) != tuple(x.shape):
            raise ValueError(f"{name}: gradient of {names[i]} has shape {tuple(g.shape)}, expected {tuple(x.shape)}")

        def f_of_x(xi, i=i):
            args = list(xs)
            args[i] = xi
            return forward(*args, **kwargs)[0]

        _record(result, names[i], g, x.shape, *_compare(g, f_of_x, x, dout, rng, method, max_full, n_directions, h))
    return result


def _note_output(result: CheckResult, out) -> None:
    """Note a forward output that is not float64 or holds NaN / inf (under ``"output"``)."""
    dtype = _dtype_note(out)
    note = _join(dtype and f"the forward {dtype}", _nonfinite_note(out, "the forward's output"))
    if note:
        result.notes["output"] = note


def _record(result: CheckResult, key: str, grad, shape, error, note) -> None:
    """Store one gradient's error and the ``shape`` of the array it belongs to, with a note on its dtype
    (not float64) and on what made the error non-finite."""
    result.errors[key], result.shapes[key] = error, tuple(shape)
    note = _join(_dtype_note(grad), note)
    if note:
        result.notes[key] = note


def check_module(module, input_shape, seed=0, tolerance=DEFAULT_TOLERANCE, method="auto", max_full=4096,
                 n_directions=4, h=1e-6, name=None, train=True, make_input=None, known_zero=()) -> CheckResult:
    """Check the input gradient and every parameter gradient of ``module``.

    ``known_zero`` names parameters whose exact gradient is zero (e.g. a bias followed by a
    batch norm, which cancels it): a relative error of two rounding-noise vectors means
    nothing, so for these the reported error is the largest absolute value of the analytic and
    numerical gradients (both must be ~0), under the name ``"<param> (=0)"``.

    The module is cast to float64 in place and put in train mode (``train=False``: eval mode).
    ``make_input(rng, shape)`` may supply the input (default: standard normal). Each forward
    call during the check starts from the same saved buffers (e.g. BN running statistics), so
    repeated calls see the same state.
    """
    name = name or type(module).__name__
    tolerance = check_tolerance(tolerance)
    rng = backend.new_host_rng(seed)
    module.astype(backend.float64)
    module.train(train)
    xp = backend.get_xp()
    x = xp.asarray(make_input(rng, tuple(input_shape)) if make_input else rng.standard_normal(tuple(input_shape))).astype(backend.float64)
    saved = [(mod, k, v.copy()) for _, mod in module.named_modules() for k, v in mod.buffers.items()]

    def restore():
        for mod, k, v in saved:
            mod.buffers[k] = v.copy()

    def run(xi):
        restore()
        return module.forward(xi)

    out = run(x)
    dout = _random_like(rng, out)
    module.zero_grad()
    dx = module.backward(dout)
    result = CheckResult(name, tolerance=tolerance)
    _note_output(result, out)
    if tuple(dx.shape) != tuple(x.shape):
        raise ValueError(f"{name}: input gradient has shape {tuple(dx.shape)}, expected {tuple(x.shape)}")
    _record(result, "input", dx, x.shape, *_compare(dx, run, x, dout, rng, method, max_full, n_directions, h))
    for qual, mod, key in list(module.named_parameters()):
        p = mod.params[key]
        g = mod.grads.get(key)
        if g is None:
            raise ValueError(f"{name}: backward left no gradient for parameter {qual}")

        def f_of_p(pv, mod=mod, key=key):
            mod.params[key] = pv
            return run(x)

        if qual in known_zero:
            num = numerical_gradient(f_of_p, p, dout, h=h)
            largest = worst_of([abs(backend.to_host(g)).max(), abs(backend.to_host(num)).max()])
            _record(result, f"{qual} (=0)", g, p.shape, largest,
                    _nonfinite_note(g, "the gradient") or _nonfinite_note(num, "the finite difference"))
        else:
            _record(result, qual, g, p.shape, *_compare(g, f_of_p, p, dout, rng, method, max_full, n_directions, h))
        mod.params[key] = p
    restore()
    return result
