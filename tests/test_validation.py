import os
import subprocess
import sys

import pytest

from tinyba2m.nn import AvgPool2d, Conv2d
from tinyba2m.ops.validation import pair


@pytest.mark.parametrize("value, match", [
    (1.5, r"op: stride must be an integer >= 1 or a pair of them, got 1.5"),
    ("ab", r"op: stride must be an integer >= 1 or a pair of them, got 'ab'"),
    ((1, 2, 3), r"op: stride must be an int or a pair of ints, got \(1, 2, 3\)"),
    ((1, 0), r"op: stride must be an integer >= 1, got 0"),
    (True, r"op: stride must be an integer >= 1 or a pair of them, got True"),
])
def test_pair_rejects_with_a_value_error(value, match):
    with pytest.raises(ValueError, match=match):
        pair("op", "stride", value)


def test_pair_accepts_ints_and_pairs():
    assert pair("op", "k", 3) == (3, 3) and pair("op", "k", (2, 3)) == (2, 3) and pair("op", "p", [0, 1], 0) == (0, 1)


def test_modules_report_a_float_argument_by_name():
    with pytest.raises(ValueError, match="Conv2d: stride must be an integer >= 1 or a pair"):
        Conv2d(3, 4, 3, stride=1.5)
    with pytest.raises(ValueError, match="AvgPool2d: kernel_size must be an integer >= 1 or a pair"):
        AvgPool2d(2.0)


NAN_INTO_LINEAR = """
import numpy as np
from tinyba2m.ops.linear import linear_forward
from tinyba2m.training.loop import evaluate
from tinyba2m.nn import Flatten, Linear, Sequential
x = np.ones((2, 3)); x[0, 0] = np.nan
try:
    linear_forward(x, np.ones((3, 2)))
    print("op: no error")
except ValueError as exc:
    print("op:", exc)
try:
    evaluate(Sequential(Flatten(), Linear(3, 2)), x.reshape(2, 3, 1, 1), np.array([0, 1]), 2)
except Exception as exc:
    print("loop:", type(exc).__name__, exc)
"""


@pytest.mark.parametrize("switch", ["1", ""])
def test_per_op_finiteness_checks_only_with_the_debug_switch(switch):
    """Off (the default) an op reads no values and the training loop reports non-finite logits;
    TINYBA2M_CHECK_FINITE=1 makes the first op that sees NaN name itself, in the loop's error too."""
    env = {**os.environ, "TINYBA2M_CHECK_FINITE": switch}
    out = subprocess.run([sys.executable, "-c", NAN_INTO_LINEAR], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    if switch:
        assert "op: linear: x contains non-finite values (NaN or inf)" in out.stdout
        assert "loop: NonFiniteLossError" in out.stdout and "non-finite activations (linear: x contains" in out.stdout
    else:
        assert "op: no error" in out.stdout
        assert "loop: NonFiniteLossError" in out.stdout and "non-finite logits" in out.stdout
