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
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import backend
from .numeric import directional_derivative, numerical_gradient, relative_error

DEFAULT_TOLERANCE = 1e-6


@dataclass
class CheckResult:
    name: str
    errors: dict = field(default_factory=dict)  # gradient name -> relative error
    tolerance: float = DEFAULT_TOLERANCE
    shapes: dict = field(default_factory=dict)  # gradient name -> shape of the checked array (for reports)

    @property
    def worst(self) -> float:
        return max(self.errors.values()) if self.errors else 0.0

    @property
    def passed(self) -> bool:
        return bool(self.errors) and self.worst <= self.tolerance

    def failed(self) -> dict:
        """The gradients whose error is above the tolerance: name -> error."""
        return {k: v for k, v in self.errors.items() if not v <= self.tolerance}

    def __str__(self) -> str:
        detail = ", ".join(f"{k}={v:.2e}" for k, v in self.errors.items())
        return f"{self.name}: worst {self.worst:.2e} (tol {self.tolerance:.0e}) {'PASS' if self.passed else 'FAIL'} [{detail}]"


def merge_results(name: str, parts) -> CheckResult:
    """One result holding every ``(label, result)`` part's errors as ``"<grad>(<label>)"``
    (just ``"<grad>"`` for an empty label)."""
    out = CheckResult(name)
    for label, res in parts:
        for k, v in res.errors.items():
            out.errors[f"{k}({label})" if label else k] = v
            if k in res.shapes:
                out.shapes[f"{k}({label})" if label else k] = res.shapes[k]
    return out


def _random_like(rng, a):
    return backend.array_module(a).asarray(rng.standard_normal(a.shape))


def _compare(analytic, f_of_x, x, dout, rng, method, max_full, n_directions, h):
    """Relative error between ``analytic`` and the numerical gradient of f_of_x at x."""
    if method == "full" or (method == "auto" and x.size <= max_full):
        return relative_error(analytic, numerical_gradient(f_of_x, x, dout, h=h))
    worst = 0.0
    for _ in range(n_directions):
        v = _random_like(rng, x)
        num = directional_derivative(f_of_x, [x], [v], dout, h=h)
        ana = float((analytic * v).sum())
        worst = max(worst, abs(ana - num) / max(abs(ana) + abs(num), 1e-30))
    return worst


def check_op(forward, backward, inputs, names=None, seed=0, tolerance=DEFAULT_TOLERANCE,
             method="auto", max_full=4096, n_directions=4, h=1e-6, name="op", kwargs=None,
             check=None) -> CheckResult:
    """Check ``backward`` of an op pair against finite differences.

    ``forward(*inputs, **kwargs) -> (out, cache)``; ``backward(dout, cache)`` returns one gradient
    (a single input) or a tuple with one gradient per input (``None`` for a non-differentiable
    one). ``check`` optionally restricts the check to the inputs with these indices.
    """
    kwargs = kwargs or {}
    rng = backend.new_host_rng(seed)
    xs = [backend.array_module(a).asarray(a).astype(backend.float64) for a in inputs]
    names = list(names) if names is not None else [f"input{i}" for i in range(len(xs))]
    out, cache = forward(*xs, **kwargs)
    dout = _random_like(rng, out)
    grads = backward(dout, cache)
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) < len(xs):
        raise ValueError(f"{name}: backward returned {len(grads)} gradients for {len(xs)} inputs")
    result = CheckResult(name, tolerance=tolerance)
    for i, (x, g) in enumerate(zip(xs, grads)):
        if g is None or (check is not None and i not in check):
            continue
        if tuple(g.shape) != tuple(x.shape):
            raise ValueError(f"{name}: gradient of {names[i]} has shape {tuple(g.shape)}, expected {tuple(x.shape)}")

        def f_of_x(xi, i=i):
            args = list(xs)
            args[i] = xi
            return forward(*args, **kwargs)[0]

        result.errors[names[i]] = _compare(g, f_of_x, x, dout, rng, method, max_full, n_directions, h)
        result.shapes[names[i]] = tuple(x.shape)
    return result


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
    if tuple(dx.shape) != tuple(x.shape):
        raise ValueError(f"{name}: input gradient has shape {tuple(dx.shape)}, expected {tuple(x.shape)}")
    result.errors["input"] = _compare(dx, run, x, dout, rng, method, max_full, n_directions, h)
    result.shapes["input"] = tuple(x.shape)
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
            result.errors[f"{qual} (=0)"] = max(float(abs(backend.to_host(g)).max()), float(abs(backend.to_host(num)).max()))
        else:
            result.errors[qual] = _compare(g, f_of_p, p, dout, rng, method, max_full, n_directions, h)
        result.shapes[f"{qual} (=0)" if qual in known_zero else qual] = tuple(p.shape)
        mod.params[key] = p
    restore()
    return result
