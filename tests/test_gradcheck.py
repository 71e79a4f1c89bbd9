"""The gradient checker itself: it passes right backward passes and catches wrong ones."""
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
