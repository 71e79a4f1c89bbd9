"""Exercise 2 (lesson 2): softplus(x) = log(1 + exp(x)), element-wise, any shape, stable.

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex02_softplus:softplus_forward --shapes 3,4
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)


def softplus_forward(x):
    """Return (out (same shape as x), cache)."""
    raise NotImplementedError("Exercise 2: write softplus_forward in lessons/exercises/ex02_softplus.py")


def softplus_backward(dout, cache):
    """Return dx (same shape as x)."""
    raise NotImplementedError("Exercise 2: write softplus_backward in lessons/exercises/ex02_softplus.py")
