"""The one place that decides the array module.

Every other file of the package asks this module for its arrays; only this file imports
``numpy`` or ``cupy`` (a test walks the package and enforces it).

- ``get_xp()``            the active array module (``numpy`` by default, ``cupy`` when chosen).
- ``use_backend(name)``   switch to ``"numpy"``, ``"cupy"`` or ``"cupysim"`` (CuPy's rules and names
                          simulated on the host, :mod:`tinyba2m.cupysim`); CuPy missing or no GPU raises
                          :class:`BackendUnavailableError` saying how to install it (never a silent
                          fallback). ``env_backend()`` reads the environment variable
                          ``TINYBA2M_BACKEND`` (the only place that does), which picks the backend
                          at import time (an unknown name or an unusable CuPy there is a one-line
                          ``RuntimeWarning`` and NumPy stays active; ``train_cifar.py`` refuses either
                          with exit status 2).
- ``array_module(x)``     the module an existing array belongs to (ops use this, so an op works on
                          whatever arrays it is given).
- ``to_host(x)`` / ``to_device(x)``  explicit moves between NumPy (host) and the active backend;
                          ``to_host_all(arrays)`` reads many at once (one read per dtype).
- ``seed(s)`` / ``host_rng()``  one seeded host generator; random numbers are drawn on the host and
                          moved, so NumPy and CuPy runs with the same seed see the same numbers.
- ``default_dtype``       float32 for training; gradient checks ask for float64 explicitly.
- ``on_device()``         True on ``cupy`` and ``cupysim`` (reads from the device are costly there).
- ``device_counters()`` / ``reset_device_counters()``  host syncs and array-module calls counted by
                          ``cupysim`` (zeros on the other backends).

Host work on every core (the thread pool, the chunker) lives in ``tinyba2m/hostpool.py``.
"""
from __future__ import annotations

import functools
import os
import warnings

import numpy

numpy_module = numpy  # exposed for the few host-only helpers (data files, checkpoints)

BACKEND_ENV_VAR = "TINYBA2M_BACKEND"
BACKENDS = ("numpy", "cupy", "cupysim")
DEVICE_BACKENDS = ("cupy", "cupysim")
CUPY_INSTALL_HINT = (
    "Install CuPy for your CUDA version, e.g. `pip install cupy-cuda12x` (CUDA 12) or "
    "`pip install cupy-cuda11x` (CUDA 11), or `pip install -e \".[gpu]\"`; see "
    "https://docs.cupy.dev/en/stable/install.html. A CUDA-capable NVIDIA GPU and driver are required."
)


class BackendUnavailableError(RuntimeError):
    """The requested array backend cannot be used on this machine."""


_xp = numpy
name = "numpy"
default_dtype = numpy.float32
float64 = numpy.float64
float32 = numpy.float32
_host_rng = numpy.random.default_rng(0)


def cupy_module_or_none():
    """The ``cupy`` module if it imports (no GPU is needed for that), else None. The simulated
    backend reads CuPy's names from it (:mod:`tinyba2m.cupysim.namespace`); no array is made."""
    try:
        import cupy  # noqa: WPS433 (only this module may import cupy)
    except Exception:  # not installed, or a broken CUDA install raising at import
        return None
    return cupy


@functools.cache  # the cupy module once it has imported and found a GPU (array_module runs per op)
def _import_cupy():
    try:
        import cupy  # noqa: WPS433 (only this module may import cupy)
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        raise BackendUnavailableError(f"CuPy backend requested but CuPy cannot be imported ({exc}). {CUPY_INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendUnavailableError(f"CuPy is installed but no CUDA GPU is usable ({exc}). {CUPY_INSTALL_HINT}") from exc
    if count < 1:
        raise BackendUnavailableError(f"CuPy is installed but no CUDA GPU is present. {CUPY_INSTALL_HINT}")
    return cupy


def cupy_available() -> tuple[bool, str]:
    """(True, "") if the CuPy backend can be used here, else (False, the reason)."""
    try:
        _import_cupy()
    except BackendUnavailableError as exc:
        return False, str(exc)
    return True, ""


@functools.cache
def _cupysim():
    """The simulated CuPy package (imported on first use: it reads CuPy's names)."""
    from tinyba2m import cupysim
    return cupysim


def use_backend(backend_name: str):
    """Make ``"numpy"``, ``"cupy"`` or ``"cupysim"`` the active backend and return its array module."""
    global _xp, name
    key = str(backend_name).strip().lower()
    if key == "numpy":
        _xp, name = numpy, "numpy"
    elif key == "cupy":
        _xp, name = _import_cupy(), "cupy"
    elif key == "cupysim":
        _xp, name = _cupysim().module, "cupysim"
    else:
        raise ValueError(f"unknown backend {backend_name!r}: expected one of {', '.join(map(repr, BACKENDS))}")
    return _xp


def on_device() -> bool:
    """True where arrays live on a (real or simulated) device: every read back to the host is a sync."""
    return name in DEVICE_BACKENDS


def device_counters() -> dict:
    """``{"syncs": ..., "calls": ..., "sync_kinds": {...}}`` counted by ``cupysim`` since the last
    reset: device-to-host reads and array-module calls (see :mod:`tinyba2m.cupysim.counters`)."""
    return _cupysim().counters.read()


def reset_device_counters() -> None:
    _cupysim().counters.reset()


def env_backend() -> str:
    """The backend ``TINYBA2M_BACKEND`` names, lower case; ``"numpy"`` where it is unset or empty.
    Any other value raises ``ValueError`` with one line listing the choices."""
    text = os.environ.get(BACKEND_ENV_VAR, "")
    key = text.strip().lower() or "numpy"
    if key not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV_VAR}={text!r} is not a backend: choose one of {', '.join(BACKENDS)}")
    return key


def get_xp():
    """The active array module (``numpy`` or ``cupy``)."""
    return _xp


def array_module(*arrays):
    """The array module of the given arrays (``cupy``/``cupysim`` if any is a device array, else ``numpy``)."""
    for a in arrays:
        if _is_sim_array(a):
            return _cupysim().module
        if is_device_array(a):
            return _import_cupy()
    return numpy


def _is_sim_array(x) -> bool:
    return type(x).__module__ == "tinyba2m.cupysim.array"


def is_device_array(x) -> bool:
    """True for CuPy arrays and cupysim's simulated device arrays."""
    return type(x).__module__.split(".")[0] == "cupy" or _is_sim_array(x)


def to_host(x):
    """A NumPy copy (or the same NumPy array) of ``x``; CuPy arrays are copied from the GPU (on
    cupysim: one counted sync)."""
    if is_device_array(x):
        return x.get()
    return numpy.asarray(x)


def to_host_all(arrays) -> list:
    """Host copies of several arrays, with ONE read per dtype for device arrays (each ``to_host``
    is a sync: a state dict of a hundred parameters would be a hundred): they are flattened and
    concatenated on the device, read, and split on the host. Host arrays are copied."""
    arrays = list(arrays)
    out, groups = [None] * len(arrays), {}
    for i, a in enumerate(arrays):
        if is_device_array(a):
            groups.setdefault(numpy.dtype(a.dtype), []).append(i)
        else:
            out[i] = numpy.array(a, copy=True)
    for idx in groups.values():
        xp = array_module(arrays[idx[0]])
        flat = to_host(xp.concatenate([arrays[i].reshape(-1) for i in idx]))
        start = 0
        for i in idx:
            size = arrays[i].size
            out[i] = flat[start:start + size].reshape(arrays[i].shape)
            start += size
    return out


def to_device(x, dtype=None):
    """``x`` as an array of the active backend (copied to the GPU when CuPy is active)."""
    arr = _xp.asarray(x)
    return arr if dtype is None else arr.astype(dtype, copy=False)


def seed(s: int) -> None:
    """Seed the host generator used for initialisation, shuffling and augmentation."""
    global _host_rng
    _host_rng = numpy.random.default_rng(int(s))


def host_rng():
    """The seeded host generator (a ``numpy.random.Generator``)."""
    return _host_rng


def new_host_rng(s):
    """An independent host generator for seed ``s``."""
    return numpy.random.default_rng(s)


def get_rng_state() -> dict:
    return _host_rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    _host_rng.bit_generator.state = state


def as_strided(x, shape, strides):
    """A strided view of ``x`` (read-only on NumPy; CuPy takes no ``writeable`` argument)."""
    mod = array_module(x)
    if mod is numpy:
        return numpy.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)
    return mod.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


def scatter_add(target, indices, values) -> None:
    """``target[indices] += values`` with repeated indices accumulated (``xp.add.at``)."""
    array_module(target).add.at(target, indices, values)


def synchronize() -> None:
    """Wait for queued GPU work to finish (no-op on NumPy); call before reading a timer."""
    if name == "cupy":
        _xp.cuda.get_current_stream().synchronize()


def device_memory_pool_bytes() -> int:
    """Bytes the CuPy memory pool holds (its high-water mark since the last ``free_device_memory``); 0 on NumPy."""
    return int(_xp.get_default_memory_pool().total_bytes()) if name == "cupy" else 0


def free_device_memory() -> None:
    """Release the CuPy pool's cached blocks (no-op on NumPy)."""
    if name == "cupy":
        _xp.get_default_memory_pool().free_all_blocks()


def device_description() -> str:
    """The GPU's name on CuPy, "" on NumPy."""
    if name != "cupy":
        return ""
    props = _xp.cuda.runtime.getDeviceProperties(_xp.cuda.Device().id)
    label = props["name"]
    return label.decode() if isinstance(label, bytes) else str(label)


def dtype_of(x):
    """The dtype of ``x`` as a ``numpy.dtype`` (works for CuPy arrays too)."""
    return numpy.dtype(x.dtype)


def is_float_dtype(dtype) -> bool:
    return numpy.dtype(dtype).kind == "f"


def save_npz(path, arrays: dict) -> None:
    """Write host copies of ``arrays`` to an ``.npz`` file at ``path`` (a path or a file object)."""
    numpy.savez(path, **{k: to_host(v) for k, v in arrays.items()})


def load_npz(path) -> dict:
    with numpy.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}



def _warn_from_environment(message: str) -> None:
    """A ``RuntimeWarning`` printed as one line, ``<environment>:0: RuntimeWarning: ...`` (no source line)."""
    warnings.warn_explicit(message, RuntimeWarning, "<environment>", 0)


try:  # importing must not fail: train_cifar.py turns either case into a usage error (exit status 2)
    use_backend(env_backend())
except ValueError as exc:  # an unknown name
    _warn_from_environment(f"{exc}; NumPy stays active.")
except BackendUnavailableError as exc:
    _warn_from_environment(f"{BACKEND_ENV_VAR}={env_backend()}: {exc} NumPy stays active.")
