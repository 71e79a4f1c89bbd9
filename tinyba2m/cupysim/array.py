"""The simulated device array: NumPy memory and arithmetic behind CuPy's rules at the boundary.

:class:`ndarray` wraps a host ``numpy.ndarray`` (``._host``) and behaves as ``cupy.ndarray`` does:

- ``numpy.asarray(d)`` / ``numpy.array(d)`` raise ``TypeError`` (CuPy's ``__array__`` refuses
  implicit conversion: "Implicit conversion to a NumPy array is not allowed");
- NumPy functions and ufuncs called on ``d`` dispatch (``__array_function__`` / ``__array_ufunc__``)
  to the simulated module where CuPy has the name, else ``TypeError`` (CuPy returns
  ``NotImplemented`` and NumPy raises ``TypeError``);
- ``d + h``, ``d @ h``... with ``h`` a NumPy array of ndim > 0 raise ``TypeError`` (CuPy's ufuncs
  reject ``numpy.ndarray`` operands); Python scalars, NumPy scalars and 0-d NumPy arrays are allowed;
- a NumPy array indexed with ``d`` raises ``TypeError`` (NumPy asks ``d.__array__``);
- device-to-host reads are counted as syncs (``float``/``int``/``bool``/``.item()``/``.tolist()``/
  ``.get()``/``repr``/``str``, and boolean-mask indexing, whose output size CuPy reads back).

Indexing a device array with NumPy index arrays, and assigning NumPy values into one, are allowed:
CuPy's ``_prepare_slice_list`` / ``_scatter_op`` (``_core/_routines_indexing.pyx``) convert
non-CuPy values with ``core.array`` (a host-to-device copy, not a read).
"""
from __future__ import annotations

import numpy

from tinyba2m.cupysim import counters


def is_host_array(x) -> bool:
    """A NumPy array CuPy would refuse as an operand (0-d ones are allowed, like scalars)."""
    return isinstance(x, numpy.ndarray) and x.ndim > 0


def refuse_host(x, where: str):
    raise TypeError(f"cupysim: {where} got a numpy.ndarray of shape {x.shape}; CuPy refuses host arrays "
                    "as operands (Unsupported type <class 'numpy.ndarray'>): move it with backend.to_device")


def unwrap(value, where: str, allow_host: bool = False):
    """The NumPy arrays behind ``value`` (device arrays, inside lists/tuples too); host arrays refused."""
    if isinstance(value, ndarray):
        return value._host
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(v, where, allow_host) for v in value)
    if not allow_host and is_host_array(value):
        refuse_host(value, where)
    return value


def wrap(value, keep=()):
    """Device arrays for the NumPy arrays and scalars in ``value`` (CuPy returns 0-d arrays where
    NumPy returns scalars); a result that is one of ``keep``'s NumPy arrays returns its wrapper."""
    if isinstance(value, numpy.ndarray):
        for dev in keep:
            if isinstance(dev, ndarray) and dev._host is value:
                return dev
        return ndarray(value)
    if isinstance(value, numpy.generic):
        return ndarray(numpy.asarray(value))
    if isinstance(value, tuple):
        return tuple(wrap(v, keep) for v in value)
    if isinstance(value, list):
        return [wrap(v, keep) for v in value]
    return value


def _binary(name):
    def op(self, other):
        if is_host_array(other):
            refuse_host(other, f"ndarray.{name}")
        return wrap(getattr(self._host, name)(unwrap(other, name)), (self,))
    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        return wrap(getattr(self._host, name)())
    op.__name__ = name
    return op


def _reading(kind, convert):
    """A method returning ``convert`` of the host array, read from the device (a sync of ``kind``)."""
    def method(self):
        return convert(self._read(kind))
    return method


class ndarray:  # noqa: N801 (CuPy's name)
    """A simulated ``cupy.ndarray`` (see the module docstring)."""

    __slots__ = ("_host",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, host):
        if not isinstance(host, numpy.ndarray):
            raise TypeError(f"cupysim.ndarray wraps a numpy.ndarray, got {type(host).__name__}")
        self._host = host

    # -- the boundary -------------------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
                        "construct a NumPy array explicitly. (cupysim: use backend.to_host)")

    def __array_function__(self, func, types, args, kwargs):
        from tinyba2m.cupysim.arraymodule import dispatch_numpy_function
        return dispatch_numpy_function(func, args, kwargs)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from tinyba2m.cupysim.arraymodule import dispatch_numpy_ufunc
        return dispatch_numpy_ufunc(ufunc, method, inputs, kwargs)

    def get(self, stream=None, order="C", out=None, blocking=True):
        """A NumPy copy: one device-to-host read (a sync)."""
        counters.sync("get")
        return numpy.array(self._host, order=order, copy=True)

    def _read(self, what):
        counters.sync(what)
        return self._host

    def __float__(self):
        return float(self._read("float")[()] if self.ndim == 0 else self._host)

    def __int__(self):
        return int(self._read("int")[()] if self.ndim == 0 else self._host)

    def __index__(self):
        if self.ndim != 0 or self.dtype.kind not in "iub":
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return self._read("index").__index__()

    __bool__, __complex__, __repr__, __str__ = (_reading(kind, convert) for kind, convert in (
        ("bool", bool), ("complex", complex), ("repr", repr), ("str", str)))
    tolist = _reading("tolist", numpy.ndarray.tolist)

    def item(self, *args):
        return self._read("item").item(*args)

    def __format__(self, spec):
        return format(self._read("format")[()] if self.ndim == 0 else self._host, spec)

    # -- the array's own data (no read) -------------------------------------------------------------
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    strides = property(lambda self: self._host.strides)
    itemsize = property(lambda self: self._host.itemsize)
    nbytes = property(lambda self: self._host.nbytes)
    flags = property(lambda self: self._host.flags)
    T = property(lambda self: ndarray(self._host.T))
    mT = property(lambda self: ndarray(self._host.mT))
    real = property(lambda self: wrap(self._host.real))
    imag = property(lambda self: wrap(self._host.imag))
    base = property(lambda self: None if self._host.base is None else ndarray(self._host.base))
    device = property(lambda self: "cupysim")

    def __len__(self):
        return len(self._host)

    def __iter__(self):  # CuPy yields device sub-arrays (no read)
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, key):
        k = unwrap(key, "indexing", allow_host=True)
        keys = k if isinstance(k, tuple) else (k,)
        if any(isinstance(v, numpy.ndarray) and v.dtype == bool and v.ndim > 0 for v in keys):
            counters.sync("boolean mask indexing")  # CuPy reads the number of selected items back
        return wrap(self._host[k])

    def __setitem__(self, key, value):
        self._host[unwrap(key, "indexing", allow_host=True)] = unwrap(value, "assignment", allow_host=True)

    def __getattr__(self, name):
        from tinyba2m.cupysim.arraymodule import array_method
        return array_method(self, name)

    # -- operators ------------------------------------------------------------------------------------
    for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
                  "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
                  "__matmul__", "__rmatmul__", "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__",
                  "__lshift__", "__rshift__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__",
                  "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__", "__ipow__",
                  "__imatmul__", "__iand__", "__ior__", "__ixor__", "__divmod__"):
        locals()[_name] = _binary(_name)
    for _name in ("__neg__", "__pos__", "__abs__", "__invert__"):
        locals()[_name] = _unary(_name)
    del _name

    def __copy__(self):
        return ndarray(self._host.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._host.copy())

    def __reduce__(self):  # pickling copies to the host (CuPy's __reduce__ calls get(): a read)
        counters.sync("pickle")
        return (ndarray, (self._host.copy(),))
