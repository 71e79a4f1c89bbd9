"""Input checks shared by every op: clear ``ValueError``s that name the op and say what was
expected and what was given.

Supported dtypes: float32 (training) and float64 (gradient checks), nothing else. Every op
refuses any other dtype of a float input at its entry (float16, an integer array, ...) with
``<op>: expected <input> to be a floating-point array (float32 or float64), got dtype float16``,
and every backward refuses such an upstream gradient: an op keeps the dtype it is given, so a
float16 input would otherwise run at float32 in one op (promoted by a float32 weight) and float16
in the next.

Ops check shapes and dtypes, which costs no device read. NaN / inf is checked once per training
step on the logits and the loss (``training/loop.py``); the per-op finiteness checks (one
device-to-host read per op) run only with the debug switch on: ``TINYBA2M_CHECK_FINITE=1`` (or
true / yes / on) in the environment or :func:`set_check_finite` ``(True)``, to find which op first sees a NaN."""
from __future__ import annotations

import functools
import operator
import os
import warnings

from .. import backend

CHECK_FINITE_ENV_VAR = "TINYBA2M_CHECK_FINITE"
SUPPORTED_FLOAT_DTYPES = ("float32", "float64")
SWITCH_VALUES = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                 "off": False, "": False}


def env_check_finite() -> bool:
    """The debug switch ``TINYBA2M_CHECK_FINITE``: 1/true/yes/on or 0/false/no/off (any case; unset or
    empty is off). Any other value raises ``ValueError`` with one line listing them."""
    text = os.environ.get(CHECK_FINITE_ENV_VAR, "")
    if text.strip().lower() not in SWITCH_VALUES:
        raise ValueError(f"{CHECK_FINITE_ENV_VAR}={text!r} is not understood: use 1, true, yes, on (checks on) or "
                         f"0, false, no, off (off)")
    return SWITCH_VALUES[text.strip().lower()]


try:  # importing must not fail: train_cifar.py refuses an unknown value with exit status 2
    _check_finite = env_check_finite()
except ValueError as exc:
    _check_finite = False
    warnings.warn_explicit(f"{exc}; the per-op checks stay off.", RuntimeWarning, "<environment>", 0)


def set_check_finite(on: bool) -> bool:
    """Turn the per-op NaN / inf checks on or off; returns the previous setting."""
    global _check_finite
    previous, _check_finite = _check_finite, bool(on)
    return previous


class NonFiniteValueError(ValueError):
    """An op's input holds NaN or inf (what a diverged training run produces)."""


def require_ndim(op: str, name: str, x, ndims, layout: str = "") -> None:
    """``x.ndim`` must be one of ``ndims`` (an int or a tuple of ints)."""
    allowed = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if getattr(x, "ndim", None) not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        lay = f" {layout}" if layout else ""
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{op}: expected {name} to be {want}{lay}, got shape {tuple(shape) if isinstance(shape, tuple) else shape}")


def is_supported_float(dtype) -> bool:
    """True for float32 and float64 (NumPy's or CuPy's); False for every other dtype."""
    try:
        return backend.numpy_module.dtype(dtype).name in SUPPORTED_FLOAT_DTYPES
    except TypeError:
        return False


def require_float(op: str, name: str, x, check_finite: bool = True) -> None:
    """``x`` must be a float32 or float64 array (and, with the debug switch on, hold only finite values)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not is_supported_float(dtype):
        raise ValueError(f"{op}: expected {name} to be a floating-point array (float32 or float64), got dtype {dtype}")
    if check_finite:
        require_finite(op, **{name: x})


def require_positive_int(op: str, name: str, value, minimum: int = 1) -> int:
    """``value`` must be an integer (a NumPy one too; not a bool) ``>= minimum``; returns it as an int."""
    try:
        v = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        v = None
    if v is None or v < minimum:
        raise ValueError(f"{op}: {name} must be an integer >= {minimum}, got {value!r}")
    return v


def pair(op: str, name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, checked, as a pair ``(along H, along W)``; anything else (a float,
    a string, a triple) is a ``ValueError``."""
    if isinstance(value, int) and not isinstance(value, bool):
        vals = (value, value)
    elif isinstance(value, (tuple, list)):
        vals = tuple(value)
    else:
        raise ValueError(f"{op}: {name} must be an integer >= {minimum} or a pair of them, got {value!r}")
    if len(vals) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    for v in vals:
        require_positive_int(op, name, v, minimum)
    return vals[0], vals[1]


def require_finite(op: str, **arrays) -> None:
    """With the debug switch on, every given array (``name=array``; ``None`` skipped) holds only
    finite values; off (the default), nothing is checked.

    One combined reduction and a single device-to-host read for all of them (one GPU sync per
    op instead of one per array); only on failure is each array looked at to name the culprit."""
    named = [(k, v) for k, v in arrays.items() if v is not None]
    if not _check_finite or not named:
        return
    xp = backend.array_module(*(v for _, v in named))
    flags = [xp.isfinite(v).all() for _, v in named]
    if not bool(functools.reduce(operator.and_, flags)):
        bad = next(k for (k, _), f in zip(named, flags) if not bool(f))
        raise NonFiniteValueError(f"{op}: {bad} contains non-finite values (NaN or inf)")


def require_channels(op: str, x, ndim: int, layout: str, channels: int) -> None:
    """``x`` must be an ``ndim``-D array (``layout``) with ``channels`` channels on axis 1."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != ndim:
        raise ValueError(f"{op}: expected a {ndim}-D input {layout}, got shape {shape}")
    if shape[1] != channels:
        raise ValueError(f"{op}: expected input with {channels} channels, got {shape[1]} (input shape {shape})")


def require_dout(op: str, dout, expected_shape) -> None:
    """The upstream gradient ``dout`` must have the shape of the forward output,
    ``expected_shape`` (a Python number counts as shape (), for the losses' ``dloss``), and an
    array ``dout`` must be float32 or float64.
    Every backward calls this first: a wrong shape would otherwise broadcast or be read
    silently into wrong gradients."""
    expected = tuple(int(s) for s in expected_shape)
    if isinstance(dout, (int, float)) and not isinstance(dout, bool):
        shape = ()
    else:
        shape = getattr(dout, "shape", None)
    if shape is None:
        raise ValueError(f"{op}: backward expected dout to be an array of shape {expected} (the forward output's), "
                         f"got a {type(dout).__name__}")
    if tuple(shape) != expected:
        raise ValueError(f"{op}: backward expected dout of shape {expected} (the forward output's), got shape {tuple(shape)}")
    dtype = getattr(dout, "dtype", None)
    if dtype is not None and not is_supported_float(dtype):
        raise ValueError(f"{op}: backward expected dout to be a floating-point array (float32 or float64), got dtype {dtype}")


def require_batch(op: str, x) -> None:
    """``x`` (N, ...) must hold at least one sample: for the modules whose result depends on the
    whole batch (batch statistics, batch softmax), where an empty batch has no meaning."""
    if x.shape[0] == 0:
        raise ValueError(f"{op}: got an empty batch (input shape {tuple(x.shape)}); it needs at least one sample")
