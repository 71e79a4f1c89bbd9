"""The simulated array module: exactly CuPy's names, NumPy's computing, CuPy's refusals.

``build_module()`` makes a module object whose public names are CuPy's (``namespace.read_namespace``):
top level, ``random`` (``Generator``/``RandomState`` limited to CuPy's methods), ``linalg``, ``fft``
and ``lib.stride_tricks``. A name CuPy lacks (``errstate``, ``nditer``...) is an ``AttributeError``,
as on CuPy. Each function:

- refuses keyword arguments missing from CuPy's signature where ``inspect.signature`` reads it
  (ufuncs take ``out``, ``dtype`` and ``casting``, as CuPy's ``ufunc.__call__``);
- refuses NumPy arrays of ndim > 0 as operands (``TypeError``), except the crossings ``array``,
  ``asarray``, ``asanyarray`` and ``ascontiguousarray`` (copies to the device, never views of the host);
- counts one call, plus the reads CuPy's implementation makes (``bincount`` reads twice: CuPy
  14.2's ``cupy/_statistics/histogram.py`` has ``if (x < 0).any():`` and ``int(cupy.max(x))``,
  both marked ``# synchronize!``; ``nonzero``/``argwhere``/``flatnonzero``/``unique``/``extract``/
  ``compress``/one-argument ``where`` size their output from the data, read once);
- returns device arrays (NumPy scalars become 0-d arrays, as CuPy's reductions return).

A CuPy name NumPy lacks (``fuse``, ``RawKernel``...) is present and raises ``NotImplementedError``
when used, except ``asnumpy`` (a read), ``get_array_module`` and ``fuse`` (returns the function).
"""
from __future__ import annotations

import types
import warnings

import numpy

from tinyba2m.cupysim import counters
from tinyba2m.cupysim.array import ndarray, refuse_host, unwrap, wrap
from tinyba2m.cupysim.namespace import read_namespace

UFUNC_KWARGS = frozenset({"out", "dtype", "casting"})
CROSSINGS = frozenset({"array", "asarray", "asanyarray", "ascontiguousarray"})
READS = {"bincount": 2, "nonzero": 1, "argwhere": 1, "flatnonzero": 1, "unique": 1, "extract": 1, "compress": 1}
# CuPy names that NumPy 2 dropped or spells otherwise: NumPy's object under its NumPy 2 name
ALIASES = {"round_": "round", "product": "prod", "cumproduct": "cumprod", "alltrue": "all", "sometrue": "any",
           "trapz": "trapezoid", "in1d": "isin"}
VALUES = {"PZERO": 0.0, "NZERO": -0.0, "PINF": float("inf"), "NINF": float("-inf"), "NaN": float("nan"),
          "NAN": float("nan"), "Inf": float("inf"), "Infinity": float("inf"), "infty": float("inf"),
          "disable_experimental_feature_warning": False}


def _check_kwargs(label, kwargs, allowed):
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        raise TypeError(f"{label}() got an unexpected keyword argument {bad[0]!r} "
                        f"(CuPy's signature takes {', '.join(allowed) or 'none'})")


def _not_simulated(label):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"{label} exists in CuPy but cupysim does not simulate it")
    stub.__name__ = label.rsplit(".", 1)[-1]
    stub.not_simulated = True
    return stub


def make_function(label, np_func, entry):
    params = entry.get("params")
    check = params is not None and not entry.get("var_kw", True)
    crossing = label.rsplit(".", 1)[-1] in CROSSINGS and label.count(".") == 1
    reads = READS.get(label.rsplit(".", 1)[-1], 0) if label.count(".") == 1 else 0

    def function(*args, **kwargs):
        if check:
            _check_kwargs(label, kwargs, params)
        counters.call()
        if crossing:
            return _crossing(np_func, args, kwargs)
        a, k = unwrap(args, label), {n: unwrap(v, label) for n, v in kwargs.items()}
        n_reads = reads or (1 if label == "cupy.where" and len(args) == 1 and not kwargs else 0)
        for _ in range(n_reads):
            counters.sync(label)
        return wrap(np_func(*a, **k), _keep(args, kwargs))
    function.__name__ = label.rsplit(".", 1)[-1]
    function.__qualname__ = label
    function.__doc__ = f"cupysim's {label} (NumPy's computing)."
    return function


def _keep(args, kwargs):
    """The device arrays among ``args`` and ``out`` (one array or a tuple), in that order."""
    out = kwargs.get("out")
    return [v for v in (*args, *(out if isinstance(out, tuple) else (out,))) if isinstance(v, ndarray)]


def _crossing(np_func, args, kwargs):
    """``array``/``asarray``...: host data is copied (the device never shares host memory)."""
    obj, rest = (args[0], args[1:]) if args else (kwargs.pop("obj", kwargs.pop("a", None)), ())
    if isinstance(obj, ndarray):
        result = np_func(obj._host, *rest, **kwargs)
        return obj if result is obj._host else ndarray(result)
    host = np_func(unwrap(obj, "array", allow_host=True), *rest, **kwargs)
    if isinstance(obj, numpy.ndarray) and numpy.shares_memory(host, obj):
        host = host.copy()
    return ndarray(numpy.asarray(host))


class ufunc:  # noqa: N801 (CuPy's name)
    """A simulated ``cupy.ufunc``: ``__call__`` and the methods CuPy has (``at``, ``reduce``...)."""

    def __init__(self, name, np_ufunc, methods):
        self.__name__, self._np, self._methods = name, np_ufunc, tuple(methods)
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self.identity, self.types = np_ufunc.identity, np_ufunc.types

    def __repr__(self):
        return f"<ufunc 'cupysim_{self.__name__}'>"

    def __call__(self, *args, **kwargs):
        _check_kwargs(f"cupy.{self.__name__}", kwargs, sorted(UFUNC_KWARGS))
        counters.call()
        a = unwrap(args, f"cupy.{self.__name__}")
        k = {n: unwrap(v, f"cupy.{self.__name__}") for n, v in kwargs.items()}
        return wrap(self._np(*a, **k), _keep(args, kwargs))

    def _method(self, method, args, kwargs, index_arg=None):
        label = f"cupy.{self.__name__}.{method}"
        if method not in self._methods:
            raise AttributeError(f"{label} does not exist in CuPy")
        counters.call()
        a = [unwrap(v, label, allow_host=(i == index_arg)) for i, v in enumerate(args)]
        k = {n: unwrap(v, label, allow_host=(n == "indices")) for n, v in kwargs.items()}
        return wrap(getattr(self._np, method)(*a, **k), _keep(args, kwargs))

    def at(self, a, indices, b=None):
        """In place: ``a[indices] op= b`` with repeated indices accumulated (index arrays may be host)."""
        args = (a, indices) if b is None else (a, indices, b)
        return self._method("at", args, {}, index_arg=1)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        return self._method("reduce", (array,), {"axis": axis, "dtype": dtype, "out": out, "keepdims": keepdims})

    def accumulate(self, array, axis=0, dtype=None, out=None):
        return self._method("accumulate", (array,), {"axis": axis, "dtype": dtype, "out": out})

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        return self._method("reduceat", (array, indices), {"axis": axis, "dtype": dtype, "out": out}, index_arg=1)

    def outer(self, A, B, **kwargs):  # noqa: N803 (CuPy's names)
        return self._method("outer", (A, B), kwargs)


class _Restricted:
    """A NumPy random object seen through CuPy's method names (``Generator``, ``RandomState``)."""

    def __init__(self, host, names, label):
        self._host, self._names, self._label = host, frozenset(names), label

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"'{self._label}' object has no attribute {name!r} (CuPy's {self._label} lacks it)")
        method = getattr(self._host, name, None)
        if method is None:
            return _not_simulated(f"cupy.random.{self._label}.{name}")
        label = f"cupy.random.{self._label}.{name}"

        def call(*args, **kwargs):
            counters.call()
            return wrap(method(*unwrap(args, label), **{n: unwrap(v, label) for n, v in kwargs.items()}))
        return call


class _Submodule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"module {self.__name__.replace('cupysim', 'cupy', 1)!r} has no attribute {name!r} "
                             "(cupysim holds exactly CuPy's names)")


class _Indexer:
    """``r_``, ``c_``, ``mgrid``, ``ogrid``: NumPy's, with device results."""

    def __init__(self, host):
        self._host = host

    def __getitem__(self, key):
        counters.call()
        return wrap(self._host[unwrap(key, "index tricks")])


def _fill(mod, label, entries, home):
    for name, entry in entries.items():
        kind = entry["kind"]
        with warnings.catch_warnings():  # NumPy 1.2x warns on deprecated aliases (np.long); a lookup is not a use
            warnings.simplefilter("ignore", DeprecationWarning)
            np_obj = getattr(home, ALIASES.get(name, name) if home is numpy else name, None)
        full = f"{label}.{name}"
        if kind == "ufunc" and isinstance(np_obj, numpy.ufunc):
            value = ufunc(name, np_obj, entry["methods"])
        elif kind == "ufunc":  # a plain function in NumPy (i0, sinc, fix)
            value = make_function(full, np_obj, {"params": None}) if callable(np_obj) else _not_simulated(full)
        elif kind == "function":
            value = make_function(full, np_obj, entry) if callable(np_obj) else _not_simulated(full)
        elif kind == "type":
            value = np_obj if isinstance(np_obj, type) else type(name, (), {"__init__": _not_simulated(full)})
        elif kind == "value":
            value = VALUES.get(name, np_obj) if home is numpy else np_obj
        elif kind == "other":
            value = _Indexer(np_obj) if name in ("r_", "c_", "mgrid", "ogrid") else np_obj
            if value is None:  # a CuPy-only object (cupy.fft.config): present, not simulated
                value = _Submodule(f"{mod.__name__}.{name}")
        else:  # a module: empty here (build_module fills the simulated ones)
            value = _Submodule(f"{mod.__name__}.{name}")
        setattr(mod, name, value)


def build_module():
    """The simulated ``cupy`` module (see the module docstring)."""
    spec, source = read_namespace()
    mod = _Submodule("cupysim")
    mod.__doc__ = f"cupysim: CuPy's names ({source}) over NumPy arrays on the host."
    mod.__version__ = spec["version"]
    mod.__namespace_source__ = source  # where the names came from (a dunder: the public names are exactly CuPy's)
    _fill(mod, "cupy", spec["top"], numpy)
    mod.ndarray = ndarray
    mod.asnumpy = _asnumpy
    mod.get_array_module = lambda *args: mod if any(isinstance(a, ndarray) for a in args) else numpy
    mod.fuse = _fuse
    for key, home in (("linalg", numpy.linalg), ("fft", numpy.fft)):
        sub = _Submodule(f"cupysim.{key}")
        _fill(sub, f"cupy.{key}", spec[key], home)
        setattr(mod, key, sub)
    lib = _Submodule("cupysim.lib")
    lib.stride_tricks = _Submodule("cupysim.lib.stride_tricks")
    _fill(lib.stride_tricks, "cupy.lib.stride_tricks", spec["stride_tricks"], numpy.lib.stride_tricks)
    mod.lib = lib
    mod.random = _random_module(spec)
    mod.cuda = _Submodule("cupysim.cuda")  # no CUDA runtime: every attribute is an AttributeError
    for name in ("polynomial", "typing", "testing"):  # not simulated: empty
        if name in spec["top"]:
            setattr(mod, name, _Submodule(f"cupysim.{name}"))
    if "exceptions" in spec["top"]:
        # AxisError, ComplexWarning...: NumPy's classes, as CuPy's are (numpy.exceptions is NumPy >= 1.25;
        # before it the same classes live at NumPy's top level)
        mod.exceptions = getattr(numpy, "exceptions", None) or types.SimpleNamespace(**{
            n: getattr(numpy, n) for n in ("AxisError", "ComplexWarning", "VisibleDeprecationWarning",
                                           "TooHardError", "RankWarning", "ModuleDeprecationWarning")
            if hasattr(numpy, n)})
    return mod


def _asnumpy(a, stream=None, order="C", out=None, blocking=True):
    counters.call()
    if isinstance(a, ndarray):
        return a.get(order=order)
    return numpy.asarray(a, order=order)


def _fuse(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


def _random_module(spec):
    rnd = _Submodule("cupysim.random")
    _fill(rnd, "cupy.random", {n: e for n, e in spec["random"].items()
                               if n not in ("default_rng", "RandomState", "Generator", "get_random_state")},
          numpy.random)
    gen_names, rs_names = spec["generator"], spec["random_state"]

    class Generator(_Restricted):
        """``cupy.random.Generator``: NumPy's PCG64 generator behind CuPy's method names (the bit
        generator's kind is not simulated: only its ``seed`` attribute, if any, is used)."""

        def __init__(self, bit_generator=None, _host=None):
            host = _host if _host is not None else numpy.random.default_rng(getattr(bit_generator, "seed", None))
            super().__init__(host, gen_names, "Generator")

    rnd.Generator = Generator
    if "default_rng" in spec["random"]:
        def default_rng(seed=None):
            counters.call()
            return Generator(_host=numpy.random.default_rng(seed))
        rnd.default_rng = default_rng
    if "RandomState" in spec["random"]:
        rnd.RandomState = lambda seed=None, method=None: _Restricted(numpy.random.RandomState(seed), rs_names,
                                                                    "RandomState")
    if "get_random_state" in spec["random"]:
        rnd.get_random_state = lambda: _Restricted(numpy.random.mtrand._rand, rs_names, "RandomState")
    return rnd


MODULE = build_module()
_SUBMODULE_OF = {"numpy": MODULE, "numpy.lib.stride_tricks": MODULE.lib.stride_tricks,
                 "numpy.lib._stride_tricks_impl": MODULE.lib.stride_tricks}


def _home_of(func):
    """The simulated module a NumPy function's name is looked up in."""
    modname = getattr(func, "__module__", "") or ""
    if modname.startswith("numpy.linalg"):
        return MODULE.linalg
    if modname.startswith("numpy.fft"):
        return MODULE.fft
    return _SUBMODULE_OF.get(modname, MODULE)


def dispatch_numpy_function(func, args, kwargs):
    """``numpy.f(d, ...)`` on a device array: CuPy's ``f`` where it has one, else ``TypeError``."""
    name = func.__name__
    home = _home_of(func)
    target = home.__dict__.get(name)
    if target is None or getattr(target, "not_simulated", False) or not callable(target):
        raise TypeError(f"no implementation found for 'numpy.{name}' on a cupysim device array "
                        "(CuPy has none: move the array with backend.to_host first)")
    return target(*args, **kwargs)


def dispatch_numpy_ufunc(np_ufunc, method, inputs, kwargs):
    """A NumPy ufunc (or its method) on a device array: CuPy's ufunc, or ``TypeError``."""
    target = MODULE.__dict__.get(np_ufunc.__name__)
    if not isinstance(target, ufunc):
        raise TypeError(f"operand type(s) all returned NotImplemented from __array_ufunc__({np_ufunc!r}, {method!r}): "
                        f"CuPy has no ufunc {np_ufunc.__name__!r}")
    for v in inputs:
        if isinstance(v, numpy.ndarray) and v.ndim > 0:
            refuse_host(v, f"numpy.{np_ufunc.__name__} with a device array")
    if method == "__call__":
        return target(*inputs, **kwargs)
    if method not in target._methods:
        raise TypeError(f"CuPy's ufunc {np_ufunc.__name__!r} has no method {method!r}")
    return getattr(target, method)(*inputs, **kwargs)


NDARRAY_NAMES = frozenset(read_namespace()[0]["ndarray"])
NDARRAY_READS = {"nonzero": 1, "compress": 1}


def array_method(arr, name):
    """``d.name`` for the methods ``cupy.ndarray`` has (an ``AttributeError`` for the others)."""
    if name.startswith("_") or name not in NDARRAY_NAMES:
        raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (cupysim: CuPy's ndarray lacks it)")
    host_method = getattr(arr._host, name, None)
    if host_method is None:
        return _not_simulated(f"cupy.ndarray.{name}")
    if not callable(host_method):
        return wrap(host_method)
    label = f"ndarray.{name}"

    def method(*args, **kwargs):
        for _ in range(NDARRAY_READS.get(name, 0)):
            counters.sync(label)
        result = host_method(*unwrap(args, label, allow_host=name in ("take", "put", "choose")),
                             **{n: unwrap(v, label) for n, v in kwargs.items()})
        return wrap(result, [arr] + _keep(args, kwargs))
    method.__name__ = name
    return method
