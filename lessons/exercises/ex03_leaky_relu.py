"""Exercise 3 (lesson 3): leaky ReLU with slope ALPHA = 0.01 for x <= 0, element-wise, any shape.

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex03_leaky_relu:leaky_relu_forward --shapes 4,5
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)

ALPHA = 0.01


def leaky_relu_forward(x):
    """Return (out (same shape as x), cache)."""
    raise NotImplementedError("Exercise 3: write leaky_relu_forward in lessons/exercises/ex03_leaky_relu.py")


def leaky_relu_backward(dout, cache):
    """Return dx (same shape as x)."""
    raise NotImplementedError("Exercise 3: write leaky_relu_backward in lessons/exercises/ex03_leaky_relu.py")
