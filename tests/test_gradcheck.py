"""The gradient checker itself: it passes right backward passes and catches wrong ones."""
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from tinyba2m import backend
from tinyba2m.gradcheck import check_module, check_op, numerical_gradient, relative_error
from tinyba2m.gradcheck.__main__ import main
from tinyba2m.nn import Linear, Module
from tinyba2m.ops.activations import sigmoid_forward


def square_forward(x):
    return x * x, x


def square_backward(dout, x):
    return 2 * x * dout


def wrong_square_backward(dout, x):
    return 2.1 * x * dout  # planted error


def test_relative_error_formula():
    np = backend.numpy_module
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    a, n = np.array([3.0, 4.0]), np.array([0.0, 0.0])
    assert relative_error(a, n) == pytest.approx(1.0)


def test_numerical_gradient_requires_float64():
    np = backend.numpy_module
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda x: x, np.ones(3, dtype=np.float32), np.ones(3))


def test_numerical_gradient_of_square():
    np = backend.numpy_module
    x = np.array([1.0, -2.0, 0.5])
    g = numerical_gradient(lambda z: z * z, x, np.ones(3))
    assert np.allclose(g, 2 * x, atol=1e-8)


@pytest.mark.parametrize("method", ["full", "direction"])
def test_check_op_catches_planted_error(method):
    x = backend.new_host_rng(0).standard_normal((5, 4))
    good = check_op(square_forward, square_backward, [x], method=method)
    bad = check_op(square_forward, wrong_square_backward, [x], method=method)
    assert good.passed and good.worst < 1e-8
    assert not bad.passed and bad.worst > 1e-3


class WrongLinear(Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["w"] = self.grads["w"] * 1.01  # planted error in a parameter gradient
        return dx


def test_check_module_catches_wrong_parameter_gradient():
    backend.seed(0)
    assert check_module(Linear(4, 3), (2, 4)).passed
    backend.seed(0)
    res = check_module(WrongLinear(4, 3), (2, 4))
    assert not res.passed and res.errors["w"] > 1e-4 and res.errors["input"] < 1e-8


def test_cli_runs_named_checks(capsys):
    assert main(["linear", "relu"]) == 0
    out = capsys.readouterr().out
    assert "linear" in out and "PASS" in out and "FAIL" not in out


def test_cli_unknown_name_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["no_such_op"])
    assert exc.value.code == 2


def test_cli_target_reports_fail_for_wrong_backward(tmp_path):
    pkg = tmp_path / "coursework_ops.py"
    pkg.write_text(textwrap.dedent('''
        def square_forward(x):
            return x * x, x

        def square_backward(dout, x):
            return 3 * x * dout   # wrong on purpose

        def cube_forward(x):
            return x * x * x, x

        def cube_backward(dout, x):
            return 3 * x * x * dout
    '''))
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{backend.__file__.rsplit('/tinyba2m/', 1)[0]}"}
    bad = subprocess.run([sys.executable, "-m", "tinyba2m.gradcheck", "--target", "coursework_ops:square_forward", "--shapes", "3,4"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    good = subprocess.run([sys.executable, "-m", "tinyba2m.gradcheck", "--target", "coursework_ops:cube_forward", "--shapes", "3,4"],
                          capture_output=True, text=True, env=env)
    assert good.returncode == 0 and "PASS" in good.stdout


class Scale(Module):
    """A user's own module: y = s * x with a learnable scalar s."""

    def __init__(self):
        super().__init__()
        self.params["s"] = backend.get_xp().asarray([1.5])

    def forward(self, x):
        self.x = x
        return self.params["s"] * x

    def backward(self, dout):
        self.accumulate_grad("s", (dout * self.x).sum(keepdims=True).reshape(1))
        return dout * self.params["s"]


def test_check_module_on_user_module():
    assert check_module(Scale(), (3, 2)).passed


def test_check_op_runs_on_sigmoid_large_tensor_with_directions():
    x = backend.new_host_rng(3).standard_normal((40, 200))
    from tinyba2m.ops.activations import sigmoid_backward
    res = check_op(sigmoid_forward, sigmoid_backward, [x], method="auto", max_full=100)
    assert res.passed


def test_cli_target_that_raises_is_a_fail_not_a_crash(tmp_path, capsys, monkeypatch):
    (tmp_path / "stub_ops.py").write_text(textwrap.dedent('''
        def mine_forward(x):
            raise NotImplementedError("Exercise 9: write mine_forward")

        def mine_backward(dout, cache):
            raise NotImplementedError("Exercise 9: write mine_backward")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--target", "stub_ops:mine_forward", "--shapes", "3,4"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "NotImplementedError: Exercise 9: write mine_forward" in out and "stub_ops.py:3" in out


# -- the command line for coursework (issue 10, item 12) ------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[1]

COURSEWORK = '''
from tinyba2m.nn import Linear


class BadLinear(Linear):
    """Right input gradient, wrong weight and bias gradients."""

    def __init__(self):
        super().__init__(3, 2)

    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["w"] = self.grads["w"] * 1.5
        self.grads["b"] = self.grads["b"] + 1.0
        return dx


class BrokenBackward(Linear):
    def __init__(self):
        super().__init__(3, 2)

    def backward(self, dout):
        raise ValueError("shapes (2,2) and (3,2) not aligned")


def picky_forward(x, w):
    if x.shape[1] != 99:
        raise ValueError("x must have 99 columns")
    return x @ w, (x, w)


def picky_backward(dout, cache):
    return None, None


def fine_forward(x, w):
    return x @ w, (x, w)


def fine_backward(dout, cache):
    x, w = cache
    raise KeyError("dw")
'''


@pytest.fixture
def coursework(tmp_path, monkeypatch):
    path = tmp_path / "coursework_mod.py"
    path.write_text(COURSEWORK)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("coursework_mod", None)
    lines = COURSEWORK.splitlines()
    return path, {key: next(i + 1 for i, ln in enumerate(lines) if key in ln)
                  for key in ("not aligned", "99 columns", 'KeyError("dw")')}


def test_fail_row_names_every_failed_gradient(coursework, capsys):
    assert main(["--target", "coursework_mod:BadLinear", "--input-shape", "4,3"]) == 1
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("coursework_mod:BadLinear"))
    assert row.split()[3] == "FAIL"
    assert re.search(r"w=\d\.\d\de-\d\d", row) and re.search(r"b=\d\.\d\de-\d\d", row), row
    assert "input=" not in row  # the input gradient is right


@pytest.mark.parametrize("target,args,phase,message,key", [
    ("coursework_mod:picky_forward", ["--shapes", "4,3", "3,2"], "forward", "ValueError: x must have 99 columns", "99 columns"),
    ("coursework_mod:fine_forward", ["--shapes", "4,3", "3,2"], "backward", "KeyError: 'dw'", 'KeyError("dw")'),
    ("coursework_mod:BrokenBackward", ["--input-shape", "4,3"], "backward", "ValueError: shapes (2,2) and (3,2) not aligned",
     "not aligned"),
])
def test_target_that_raises_names_target_phase_and_line(coursework, capsys, target, args, phase, message, key):
    path, line_of = coursework
    assert main(["--target", target, *args]) == 1          # a FAIL, not a usage error (exit 2)
    out = capsys.readouterr().out
    assert f"FAIL {target}: {phase} raised {message} (raised at {path}:{line_of[key]})" in out, out


def test_shapes_count_mismatch_is_a_usage_error(coursework, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--target", "coursework_mod:fine_forward", "--shapes", "4,3"])
    assert exc.value.code == 2
    assert "fine_forward takes 2 input array(s) (x, w), but --shapes gave 1" in capsys.readouterr().err


def run_cli(cwd, *args):
    return subprocess.run([sys.executable, "-m", "tinyba2m.gradcheck", *args], cwd=cwd, capture_output=True, text=True)


def test_target_in_lessons_works_from_inside_lessons():
    res = run_cli(ROOT / "lessons", "--target", "lessons.solutions.ex01_row_scale:row_scale_forward", "--shapes", "4,3", "4")
    assert res.returncode == 0 and "PASS" in res.stdout, res.stdout + res.stderr
    assert f"using {ROOT}" in res.stderr and "run from there" in res.stderr


def test_target_that_cannot_be_imported_says_where_to_run_from(tmp_path):
    res = run_cli(tmp_path, "--target", "lessons.solutions.ex01_row_scale:row_scale_forward", "--shapes", "4,3", "4")
    assert res.returncode == 2
    assert "cannot import module 'lessons.solutions.ex01_row_scale'" in res.stderr
    assert "the repository root" in res.stderr


# -- never a wrong PASS (issue 19, items 1-4) ------------------------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

from tinyba2m.gradcheck import CheckResult  # noqa: E402
from tinyba2m.gradcheck.__main__ import print_table  # noqa: E402

NAN, INF = float("nan"), float("inf")


def test_a_nan_after_the_first_error_is_a_fail(capsys):
    res = CheckResult("x", {"a": 1e-9, "b": NAN})
    assert not res.passed and list(res.failed()) == ["b"]
    assert res.worst != res.worst  # NaN
    assert "FAIL" in str(res) and "b=NaN" in str(res)
    print_table([res])
    row = capsys.readouterr().out.splitlines()[2]
    assert row.split()[1:4] == ["NaN", "1e-06", "FAIL"] and row.endswith("b=NaN"), row


finite_errors = st.floats(min_value=0.0, max_value=1e-3, allow_nan=False)


@given(st.dictionaries(st.text("abcdefgxyz", min_size=1, max_size=4), finite_errors, max_size=6),
       st.lists(st.sampled_from([NAN, INF, -INF]), min_size=1, max_size=3), st.data())
def test_any_error_dict_with_a_non_finite_value_fails(errors, bad_values, data):
    errors = dict(errors)
    bad_keys = []
    for i, v in enumerate(bad_values):  # put each non-finite error at a random place in the dict
        key = f"bad{i}"
        pos = data.draw(st.integers(0, len(errors)))
        items = list(errors.items())
        errors = dict(items[:pos] + [(key, v)] + items[pos:])
        bad_keys.append(key)
    tol = data.draw(st.sampled_from([1e-6, 1e-2, 1.0]))
    res = CheckResult("prop", errors, tol)
    assert not res.passed
    assert set(bad_keys) <= set(res.failed())
    assert res.worst != res.worst or res.worst == INF   # NaN or inf, never a finite number
    summary = res.failure_summary()
    for key, v in zip(bad_keys, bad_values):
        assert f"{key}={'NaN' if v != v else ('inf' if v > 0 else '-inf')}" in summary, summary


@given(st.dictionaries(st.text("abc", min_size=1, max_size=3), finite_errors, min_size=1, max_size=6))
def test_finite_errors_within_the_tolerance_pass(errors):
    res = CheckResult("prop", errors, 1e-3)
    assert res.passed and not res.failed() and res.worst == max(errors.values())


def nan_w_backward(dout, cache):
    x, w = cache
    dw = x.T @ dout
    dw[0, 0] = float("nan")
    return dout @ w.T, dw


def matmul_forward(x, w):
    return x @ w, (x, w)


@pytest.mark.parametrize("method", ["full", "direction"])
def test_check_op_fails_a_nan_gradient_after_a_good_one(method):
    r = backend.new_host_rng(0)
    res = check_op(matmul_forward, nan_w_backward, [r.standard_normal((3, 4)), r.standard_normal((4, 2))], method=method)
    assert res.errors["x"] < 1e-8
    assert not res.passed and list(res.failed()) == ["w"]
    assert res.notes["w"] == "the gradient holds 1 NaN"


def test_direction_check_fails_a_nan_from_the_forward():
    """The directional check took max(0.0, NaN) == 0.0: a forward that gives NaN off the centre point passed."""
    def forward(x):
        return x * 2, x

    def backward(dout, x):
        return 2 * dout

    calls = []

    def flaky_forward(x):
        calls.append(1)
        out, cache = forward(x)
        return (out * float("nan") if len(calls) > 1 else out), cache

    res = check_op(flaky_forward, backward, [backend.new_host_rng(0).standard_normal((4, 3))], method="direction")
    assert not res.passed and res.worst != res.worst, str(res)


class NanBiasLinear(Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["b"] = self.grads["b"] * float("nan")
        return dx


def test_check_module_fails_a_nan_parameter_gradient_and_a_nan_known_zero():
    backend.seed(0)
    res = check_module(NanBiasLinear(4, 3), (2, 4))
    assert not res.passed and "b" in res.failed() and "w" not in res.failed(), str(res)
    backend.seed(0)
    res = check_module(NanBiasLinear(4, 3), (2, 4), known_zero=("b",))
    assert not res.passed and "b (=0)" in res.failed(), str(res)


STUDENT_OPS = '''
import numpy as np


def nanb_forward(x, w):
    return x @ w, (x, w)


def nanb_backward(dout, cache):
    x, w = cache
    dw = x.T @ dout
    dw[0, 0] = np.nan
    return dout @ w.T, dw


def wrongw_forward(s, x, w):
    return s * (x @ w), (s, x, w)


def wrongw_backward(dout, cache):
    s, x, w = cache
    return None, s * dout @ w.T, 2 * s * x.T @ dout


def cast_forward(s, x):
    return (s * x).astype(np.float32), (s, x)


def cast_backward(dout, cache):
    s, x = cache
    return (dout * x).astype(np.float32), dout * s


def castgrad_forward(x):
    return 3 * x, x


def castgrad_backward(dout, x):
    return (3 * dout).astype(np.float32)
'''


@pytest.fixture
def student_ops(tmp_path, monkeypatch):
    (tmp_path / "student_ops.py").write_text(STUDENT_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("student_ops", None)


def row_of(out, name):
    return next(ln for ln in out.splitlines() if ln.startswith(name))


def test_cli_nan_gradient_is_a_fail_named_nan(student_ops, capsys):
    assert main(["--target", "student_ops:nanb_forward", "--shapes", "3,4", "4,2"]) == 1
    out = capsys.readouterr().out
    row = row_of(out, "student_ops:nanb_forward")
    assert row.split()[1:4] == ["NaN", "1e-06", "FAIL"], row
    assert "w=NaN (the gradient holds 1 NaN)" in row and "x=" not in row, row
    assert "FAILED: student_ops:nanb_forward" in out


@pytest.mark.parametrize("tol", ["-1", "nan", "inf", "0", "abc", "-inf"])
def test_cli_refuses_a_tolerance_that_is_not_finite_and_positive(tol, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["linear", f"--tol={tol}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tol" in err and "finite number > 0" in err and repr(tol) in err, err


def test_check_op_refuses_a_bad_tolerance():
    with pytest.raises(ValueError, match="tolerance must be a finite number > 0, got nan"):
        check_op(square_forward, square_backward, [backend.new_host_rng(0).standard_normal(3)], tolerance=float("nan"))


def test_fail_row_names_positional_inputs_from_the_forward_signature(student_ops, capsys):
    assert main(["--target", "student_ops:wrongw_forward", "--shapes", "1", "3,4", "4,2"]) == 1
    row = row_of(capsys.readouterr().out, "student_ops:wrongw_forward")
    assert re.search(r"FAIL  w=\d\.\d\de-\d\d$", row), row
    assert "input" not in row


def test_check_op_names_inputs_from_the_signature_and_star_args():
    r = backend.new_host_rng(0)
    x, w = r.standard_normal((3, 4)), r.standard_normal((4, 2))
    assert set(check_op(matmul_forward, nan_w_backward, [x, w]).errors) == {"x", "w"}

    def star_forward(*arrays):
        return arrays[0] * arrays[1], arrays

    def star_backward(dout, arrays):
        return dout * arrays[1], dout * arrays[0]

    assert set(check_op(star_forward, star_backward, [x, x + 1]).errors) == {"arrays0", "arrays1"}


def test_fail_row_says_when_the_output_is_float32(student_ops, capsys):
    assert main(["--target", "student_ops:cast_forward", "--shapes", "3,4", "3,4"]) == 1
    row = row_of(capsys.readouterr().out, "student_ops:cast_forward")
    assert "the forward returned float32: the check runs in float64" in row, row
    assert "s=" in row and "(returned float32: the check runs in float64)" in row, row   # s's own gradient is float32 too


def test_fail_row_says_when_a_gradient_is_float32(student_ops, capsys):
    assert main(["--target", "student_ops:castgrad_forward", "--shapes", "40,30", "--tol", "1e-9"]) == 1
    row = row_of(capsys.readouterr().out, "student_ops:castgrad_forward")
    assert re.search(r"FAIL  x=\d\.\d\de-\d\d \(returned float32: the check runs in float64\)$", row), row
    assert "forward returned" not in row


class Float32Scale(Scale):
    """A module whose forward quietly casts to float32."""

    def forward(self, x):
        return super().forward(x).astype("float32")


def test_check_module_notes_a_float32_output():
    res = check_module(Float32Scale(), (3, 2))
    assert not res.passed
    assert res.notes["output"] == "the forward returned float32: the check runs in float64", res.notes
    assert "the forward returned float32" in res.failure_summary()
