"""The seeded float64 inputs of the gradient-check cases (on the active backend)."""
from __future__ import annotations

import math

from ... import backend


def normal(shape, seed=1, scale=1.0):
    """Standard normal values times ``scale``, from ``new_host_rng(seed)``."""
    return backend.get_xp().asarray(backend.new_host_rng(seed).standard_normal(shape) * scale)


def uniform(shape, low, high, seed=1):
    return backend.get_xp().asarray(backend.new_host_rng(seed).uniform(low, high, shape))


def away_from_zero(rng, shape, margin=0.1):
    """Standard normal values pushed at least ``margin`` away from 0 (no ReLU kinks)."""
    x = rng.standard_normal(shape)
    return backend.get_xp().asarray(x + margin * (2 * (x > 0) - 1))


def distinct(rng, shape, gap=0.05):
    """Shuffled, evenly spaced values: no two equal (no max-pool ties, far wider apart than h)."""
    size = math.prod(shape)
    ladder = backend.numpy_module.arange(size, dtype=backend.float64) * gap - size * gap / 2
    return backend.get_xp().asarray(rng.permutation(ladder).reshape(shape))
