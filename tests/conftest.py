"""Shared test set-up: a bounded, derandomised hypothesis profile for CI and a fixture that runs
a test on every available backend (CuPy skips with the reason where it cannot run)."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tinyba2m import backend

settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ["numpy", "cupy"]


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module of each backend in turn; the test runs with that backend active."""
    previous = backend.name
    if request.param == "cupy":
        ok, why = backend.cupy_available()
        if not ok:
            pytest.skip(f"CuPy backend not available: {why}")
    mod = backend.use_backend(request.param)
    yield mod
    backend.use_backend(previous)


@pytest.fixture
def rng():
    return backend.new_host_rng(1234)
