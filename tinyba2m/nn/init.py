"""Parameter initialisation, drawn on the host from the seeded generator and moved to the
active backend (so NumPy and CuPy runs with the same seed start from the same weights)."""
from __future__ import annotations

import math

from .. import backend


def he_normal(shape, fan_in: int, dtype=None):
    """Normal(0, sqrt(2 / fan_in)) — for layers followed by ReLU."""
    std = math.sqrt(2.0 / max(fan_in, 1))
    return backend.to_device(backend.host_rng().standard_normal(shape) * std, dtype or backend.default_dtype)


def uniform_fan_in(shape, fan_in: int, dtype=None):
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) — the usual bias / linear default."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return backend.to_device(backend.host_rng().uniform(-bound, bound, shape), dtype or backend.default_dtype)


def zeros(shape, dtype=None):
    return backend.get_xp().zeros(shape, dtype=dtype or backend.default_dtype)


def ones(shape, dtype=None):
    return backend.get_xp().ones(shape, dtype=dtype or backend.default_dtype)
