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
