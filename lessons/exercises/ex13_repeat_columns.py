"""Exercise 13 (lesson 13): pick columns with repeats; the backward needs a scatter-add.

    IDX = [0, 2, 2, 1, 0]          out = x[:, IDX]        x (N, D) with D >= 3 -> out (N, 5)

Must work on NumPy and CuPy: xp = backend.array_module(x), backend.scatter_add for the backward.

Check from the repository root (prefix TINYBA2M_BACKEND=cupy on a GPU machine):
    python -m tinyba2m.gradcheck --target lessons.exercises.ex13_repeat_columns:repeat_columns_forward --shapes 3,4
"""
from tinyba2m import backend  # noqa: F401

IDX = [0, 2, 2, 1, 0]


def repeat_columns_forward(x):
    """Return (out (N, 5), cache)."""
    raise NotImplementedError("Exercise 13: write repeat_columns_forward in lessons/exercises/ex13_repeat_columns.py")


def repeat_columns_backward(dout, cache):
    """Return dx (N, D): column j of dx is the sum of the columns of dout that came from column j of x."""
    raise NotImplementedError("Exercise 13: write repeat_columns_backward in lessons/exercises/ex13_repeat_columns.py")
