import ast
import pathlib

import pytest

from tinyba2m import backend

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tinyba2m"


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


CUPYSIM = PACKAGE / "cupysim"  # the simulated CuPy: NumPy underneath; cupy imported only to read its names


def test_only_the_backend_imports_numpy_or_cupy():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "backend.py" and path.parent == PACKAGE:
            continue
        if path.parent == CUPYSIM:
            continue
        bad = {m for m in imported_modules(path) if m in ("numpy", "cupy")}
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {', '.join(sorted(bad))}")
    assert not offenders, "only tinyba2m/backend.py may import numpy or cupy:\n" + "\n".join(offenders)


def test_cupysim_never_imports_cupy():
    """The cupysim package asks the backend for the cupy module (to read its names) instead."""
    users = sorted(p.name for p in CUPYSIM.glob("*.py") if "cupy" in set(imported_modules(p)))
    assert users == []


def test_the_import_walker_sees_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import numpy as np\nfrom cupy import fuse\n")
    assert set(imported_modules(f)) == {"numpy", "cupy"}


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown backend"):
        backend.use_backend("torch")


def test_cupy_request_without_gpu_says_how_to_install():
    ok, _ = backend.cupy_available()
    if ok:
        pytest.skip("CuPy works here; the error path cannot be exercised")
    with pytest.raises(backend.BackendUnavailableError, match="pip install cupy-cuda12x"):
        backend.use_backend("cupy")
    assert backend.name == "numpy", "a failed switch must leave the previous backend active"


def test_env_variable_picks_backend(tmp_path):
    import subprocess
    import sys
    code = "from tinyba2m import backend; print(backend.name)"
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "TINYBA2M_BACKEND": "numpy"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "numpy"
    bad = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "TINYBA2M_BACKEND": "nope"},
                         capture_output=True, text=True)
    # an unknown name: one line listing the choices (no traceback), and NumPy stays active
    assert bad.returncode == 0 and bad.stdout.strip() == "numpy" and len(bad.stderr.splitlines()) == 1
    assert f"TINYBA2M_BACKEND='nope' is not a backend: choose one of {', '.join(backend.BACKENDS)}" in bad.stderr


def test_env_variable_naming_an_unusable_cupy_warns_and_the_cli_refuses_it():
    import os
    import pathlib
    import subprocess
    import sys
    if backend.cupy_available()[0]:
        pytest.skip("CuPy works here; the error path cannot be exercised")
    env = {**os.environ, "TINYBA2M_BACKEND": "cupy"}
    code = "from tinyba2m import backend; print(backend.name)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "numpy"
    assert "RuntimeWarning: TINYBA2M_BACKEND=cupy: CuPy " in out.stderr  # cannot be imported, or no GPU
    script = pathlib.Path(__file__).resolve().parents[1] / "train_cifar.py"
    cli = subprocess.run([sys.executable, str(script), "--epochs", "1"], env=env, capture_output=True, text=True)
    assert cli.returncode == 2 and "--backend cupy is not available here" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_to_host_and_to_device_round_trip(xp):
    host = backend.numpy_module.arange(6, dtype="float32").reshape(2, 3)
    dev = backend.to_device(host)
    assert backend.array_module(dev) is xp
    back = backend.to_host(dev)
    assert type(back) is type(host) and (back == host).all()


def test_seed_makes_host_rng_repeatable():
    backend.seed(5)
    a = backend.host_rng().standard_normal(4)
    backend.seed(5)
    b = backend.host_rng().standard_normal(4)
    assert (a == b).all()
