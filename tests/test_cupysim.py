"""cupysim refuses what CuPy refuses and counts what a GPU makes slow (see tinyba2m/cupysim)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tinyba2m import backend
from tinyba2m.cupysim import counters, namespace


@pytest.fixture
def cp():
    previous = backend.name
    xp = backend.use_backend("cupysim")
    backend.reset_device_counters()
    yield xp
    backend.use_backend(previous)


@pytest.fixture
def d(cp):
    return backend.to_device(np.arange(6, dtype="float32").reshape(2, 3))


def test_device_arrays_are_their_own_type_and_the_backend_knows_them(cp, d):
    assert type(d) is cp.ndarray and isinstance(d, cp.ndarray) and not isinstance(d, np.ndarray)
    assert backend.is_device_array(d) and backend.array_module(d) is cp and backend.on_device()
    assert backend.array_module(np.zeros(2)) is np


@pytest.mark.parametrize("convert", [np.asarray, np.array, np.ascontiguousarray])
def test_implicit_conversion_to_numpy_is_a_type_error(d, convert):
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        convert(d)


def test_numpy_functions_dispatch_where_cupy_has_them_and_refuse_elsewhere(cp, d):
    assert type(np.sum(d)) is cp.ndarray and type(np.exp(d)) is cp.ndarray
    assert type(np.concatenate([d, d])) is cp.ndarray
    with pytest.raises(TypeError, match="numpy.insert"):
        np.insert(d, 0, 1.0)                      # CuPy has no insert


@pytest.mark.parametrize("op", [lambda d, h: d + h, lambda d, h: h + d, lambda d, h: d @ h.T, lambda d, h: d * h,
                                lambda d, h: np.add(d, h), lambda d, h: d == h])
def test_a_numpy_operand_is_a_type_error(d, op):
    with pytest.raises(TypeError):
        op(d, np.ones((2, 3), dtype="float32"))


def test_scalars_and_0d_numpy_values_are_allowed(cp, d):
    for v in (2, 2.0, np.float32(2), np.array(2.0, dtype="float32")):
        assert type(d * v) is cp.ndarray and type(v + d) is cp.ndarray


def test_indexing_numpy_with_a_device_array_is_a_type_error(cp):
    idx = cp.asarray(np.array([0, 1]))
    with pytest.raises(TypeError):
        np.arange(4)[idx]


def test_device_arrays_take_numpy_indices_and_values(cp, d):
    assert d[np.array([1, 0])].shape == (2, 3)      # CuPy converts index arrays (_prepare_slice_list)
    d[0] = np.ones(3, dtype="float32")               # and assigned values (_scatter_op: core.array)
    assert backend.to_host(d)[0].tolist() == [1.0, 1.0, 1.0]


def test_cupy_names_only(cp):
    for missing in ("errstate", "nditer", "insert", "geomspace", "seterr"):
        with pytest.raises(AttributeError):
            getattr(cp, missing)
    gen = cp.random.default_rng(0)
    for missing in ("permutation", "shuffle", "choice", "normal"):
        with pytest.raises(AttributeError):
            getattr(gen, missing)
    assert type(gen.standard_normal((2,))) is cp.ndarray
    assert hasattr(cp.lib.stride_tricks, "as_strided") and hasattr(cp.lib.stride_tricks, "sliding_window_view")
    assert hasattr(cp.add, "at") and hasattr(cp.linalg, "norm") and hasattr(cp.fft, "rfft")
    spec, _ = namespace.read_namespace()
    assert {n for n in dir(cp) if not n.startswith("_")} == set(spec["top"])
    for sub in ("linalg", "fft", "random"):
        assert {n for n in dir(getattr(cp, sub)) if not n.startswith("_")} == set(spec[sub])


def test_keyword_arguments_cupy_does_not_take_are_refused(cp, d):
    with pytest.raises(TypeError, match="unexpected keyword argument 'where'"):
        cp.sum(d, where=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'where'"):
        cp.add(d, d, where=True)                     # ufuncs: out, dtype, casting
    with pytest.raises(TypeError, match="unexpected keyword argument 'like'"):
        cp.zeros(3, like=d)
    assert cp.matmul(d, d.T, out=cp.empty((2, 2), dtype="float32")).shape == (2, 2)


def test_out_returns_the_same_array(cp, d):
    work = cp.empty((2, 2), dtype="float32")
    assert cp.matmul(d, d.T, out=work) is work


def test_reductions_give_0d_device_arrays_and_reads_are_counted(cp, d):
    s = d.sum()
    assert type(s) is cp.ndarray and s.shape == ()
    assert counters.syncs == 0
    float(s), int(s), bool(s), s.item(), d.tolist(), repr(d), str(d), backend.to_host(d)
    assert counters.syncs == 8
    assert set(counters.by_kind) == {"float", "int", "bool", "item", "tolist", "repr", "str", "get"}


def test_calls_are_counted_and_reset(cp, d):
    backend.reset_device_counters()
    cp.exp(d)
    cp.sum(d, axis=0)
    np.tanh(d)                                        # dispatched: a call of the simulated module
    assert backend.device_counters()["calls"] == 3
    backend.reset_device_counters()
    assert backend.device_counters() == {"syncs": 0, "calls": 0, "sync_kinds": {}}


def test_functions_that_read_on_cupy_count_their_reads(cp):
    i = cp.asarray(np.array([0, 2, 2]))
    cp.bincount(i, minlength=4)
    assert counters.syncs == 2                        # (x < 0).any() and int(x.max()) in CuPy
    i[i > 0]
    assert counters.syncs == 3                        # a boolean mask's output size


def test_to_device_copies_host_memory(cp):
    h = np.zeros(3, dtype="float32")
    dev = backend.to_device(h)
    h[0] = 5
    assert backend.to_host(dev)[0] == 0


def test_the_snapshot_matches_the_installed_cupy():
    cupy = backend.cupy_module_or_none()
    if cupy is None:
        pytest.skip("cupy cannot be imported here: the snapshot is what cupysim uses")
    snap = namespace.read_snapshot()
    if snap["version"] != cupy.__version__:
        pytest.skip(f"the snapshot is of cupy {snap['version']}, cupy {cupy.__version__} is installed here")
    live = json.loads(json.dumps(namespace.namespace_of(cupy)))
    assert snap == live, "regenerate with: python -m tinyba2m.cupysim --write-snapshot"


def test_without_cupy_the_snapshot_is_used(tmp_path):
    code = ("import sys; sys.modules['cupy'] = None\n"
            "from tinyba2m import backend; xp = backend.use_backend('cupysim'); print(xp.__namespace_source__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("snapshot of cupy ")


def test_the_environment_variable_selects_cupysim():
    import os
    code = "from tinyba2m import backend; print(backend.name, backend.on_device())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TINYBA2M_BACKEND": "cupysim"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cupysim", "True"]


# The gradient checker's built-in cases on cupysim (all of them: python -m tinyba2m.gradcheck
# --backend cupysim, ~30 s); those over a second each are marked slow to keep the suite short.
SLOW_CASES = {"ba2m", "ba2m_branch_subset", "ba2m_eval", "ba2m_raw_sar", "ba2m_sigmoid", "ba2m_softmax_sum"}


def _case_params():
    from tinyba2m.gradcheck.registry import all_cases
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else n for n in sorted(all_cases())]


@pytest.mark.parametrize("case", _case_params())
def test_gradcheck_builtin_case_on_cupysim(cp, case):
    from tinyba2m.gradcheck.registry import all_cases
    result = all_cases()[case]()
    assert result.passed, result.failure_summary()


def test_gradcheck_takes_backend_cupysim(capsys):
    from tinyba2m.gradcheck.__main__ import main
    previous = backend.name
    try:
        assert main(["--backend", "cupysim", "relu", "linear"]) == 0
    finally:
        backend.use_backend(previous)
    out = capsys.readouterr().out
    assert "2/2 passed" in out and "on backend cupysim" in out
