"""CuPy's names, read from the installed ``cupy`` or from the committed snapshot.

``read_namespace()`` returns ``(spec, source)``: ``source`` is ``"cupy <version>"`` where ``import
cupy`` works (no GPU is needed to read names), else ``"snapshot of cupy <version>"``. ``spec`` is a
dict:

- ``"top"``, ``"random"``, ``"linalg"``, ``"fft"``, ``"stride_tricks"``: ``{name: entry}`` where an
  entry is ``{"kind": "function"|"ufunc"|"type"|"value"|"module"|"other", "params": [...] | None,
  "var_kw": bool, "methods": [...]}``; ``params`` are the keyword names of a readable signature
  (``None`` where ``inspect.signature`` cannot read it), ``methods`` the ufunc methods (``at``,
  ``reduce``...).
- ``"generator"`` / ``"random_state"``: public method names of ``cupy.random.Generator`` /
  ``RandomState``; ``"ndarray"``: public attribute names of ``cupy.ndarray``.

``python -m tinyba2m.cupysim --write-snapshot`` rewrites ``cupy_namespace.json`` from the installed
CuPy. This package never imports ``cupy`` itself: it asks the backend for the module, only to read names.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import pathlib

SNAPSHOT = pathlib.Path(__file__).with_name("cupy_namespace.json")
UFUNC_METHODS = ("at", "reduce", "accumulate", "reduceat", "outer")
SUBMODULES = {"random": "random", "linalg": "linalg", "fft": "fft", "stride_tricks": "lib.stride_tricks"}


def _public(obj) -> list[str]:
    """Public names, less ``from __future__ import annotations`` and imported modules (``np``) that
    a submodule happens to hold."""
    names = []
    for n in dir(obj):
        value = getattr(obj, n, None)
        if n.startswith("_") or type(value).__name__ == "_Feature" or (n == "np" and inspect.ismodule(value)):
            continue
        names.append(n)
    return sorted(names)


def _entry(obj) -> dict:
    kind = type(obj).__name__
    if kind == "ufunc" or type(obj).__module__.startswith("cupy._core._kernel") and hasattr(obj, "nin"):
        return {"kind": "ufunc", "params": None, "var_kw": True,
                "methods": [m for m in UFUNC_METHODS if hasattr(obj, m)]}
    if inspect.ismodule(obj) or kind == "_LazyModule":
        return {"kind": "module", "params": None, "var_kw": True, "methods": []}
    if isinstance(obj, type):
        return {"kind": "type", "params": None, "var_kw": True, "methods": []}
    if callable(obj):
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            return {"kind": "function", "params": None, "var_kw": True, "methods": []}
        params = [p.name for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        return {"kind": "function", "params": params, "var_kw": var_kw, "methods": []}
    if isinstance(obj, (int, float, bool, type(None))):
        return {"kind": "value", "params": None, "var_kw": True, "methods": []}
    return {"kind": "other", "params": None, "var_kw": True, "methods": []}


def namespace_of(cupy) -> dict:
    """The spec (see the module docstring) of an imported ``cupy`` module. Scanned twice: reading an
    attribute can import a lazy one (``cupy.random.Generator``), which changes ``dir``."""
    _scan(cupy)
    return _scan(cupy)


def _scan(cupy) -> dict:
    spec = {"version": cupy.__version__}
    spec["top"] = {n: _entry(getattr(cupy, n)) for n in _public(cupy)}
    for key, path in SUBMODULES.items():
        mod = cupy
        for part in path.split("."):
            mod = getattr(mod, part)
        spec[key] = {n: _entry(getattr(mod, n)) for n in _public(mod)}
    spec["generator"] = _public(cupy.random.Generator)
    spec["random_state"] = _public(cupy.random.RandomState)
    spec["ndarray"] = _public(cupy.ndarray)
    return spec


@functools.cache
def read_namespace() -> tuple[dict, str]:
    from tinyba2m import backend  # here, not at the top: backend imports this package lazily
    cupy = backend.cupy_module_or_none()
    if cupy is not None:
        with contextlib.suppress(Exception):  # an unexpected CuPy layout: fall back on the snapshot
            return namespace_of(cupy), f"cupy {cupy.__version__}"
    spec = read_snapshot()
    return spec, f"snapshot of cupy {spec['version']}"


def read_snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


def write_snapshot(path=SNAPSHOT) -> str:
    """Rewrite the snapshot from the installed CuPy; returns its version. Raises where CuPy cannot be imported."""
    from tinyba2m import backend  # here, not at the top: backend imports this package lazily
    cupy = backend.cupy_module_or_none()
    if cupy is None:
        raise RuntimeError("cupy cannot be imported here: install cupy-cuda12x (no GPU needed) to write the snapshot")
    spec = namespace_of(cupy)
    pathlib.Path(path).write_text(json.dumps(spec, indent=0, sort_keys=True) + "\n")
    return spec["version"]
