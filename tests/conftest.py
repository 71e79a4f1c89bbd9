"""Shared test set-up: a bounded, derandomised hypothesis profile for CI and a fixture that runs
a test on every available backend (CuPy skips with the reason where it cannot run), and one
that turns the per-op finiteness checks on."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tinyba2m import backend

settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ["numpy", "cupy", "cupysim"]


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
def check_finite():
    """The per-op NaN / inf checks on for one test (the debug switch, ``TINYBA2M_CHECK_FINITE=1``):
    the documented way to get an op's non-finite error; off, only the training loop checks."""
    from tinyba2m.ops.validation import set_check_finite
    previous = set_check_finite(True)
    yield
    set_check_finite(previous)


@pytest.fixture
def rng():
    return backend.new_host_rng(1234)


# -- shared by the command-line tests ---------------------------------------------------------------
@pytest.fixture(scope="module")
def small_data():
    """96 training / 48 test synthetic images of 12x12, 10 classes: 3 steps of 32 per epoch."""
    from tinyba2m.data import make_synthetic
    return make_synthetic(96, 48, seed=0, num_classes=10, image_size=12)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_data):
    """A finished 2-epoch train_cifar.py run on ``small_data`` (its run folder)."""
    from test_train_cli import tiny_args
    from tinyba2m.training.cli import main
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(tiny_args(out), data=small_data) == 0
    return out


# cupysim duplicates of the heaviest backend-parametrised tests (several seconds each on the
# simulated device); their NumPy runs stay in the default suite, `-m slow` runs these too.
SLOW_ON_CUPYSIM = {"test_ba2m_finite_differences_train_mode"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        spec = getattr(item, "callspec", None)
        if spec is not None and spec.params.get("xp") == "cupysim" and item.originalname in SLOW_ON_CUPYSIM:
            item.add_marker(pytest.mark.slow)
