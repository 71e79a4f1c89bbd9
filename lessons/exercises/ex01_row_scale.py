"""Exercise 1 (lesson 1): scale each sample of a batch by its own number.

    out[n, d] = s[n] * x[n, d]        x (N, D), s (N,)  ->  out (N, D)

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex01_row_scale:row_scale_forward --shapes 4,3 4
"""


def row_scale_forward(x, s):
    """Return (out (N, D), cache)."""
    raise NotImplementedError("Exercise 1: write row_scale_forward in lessons/exercises/ex01_row_scale.py")


def row_scale_backward(dout, cache):
    """Return (dx (N, D), ds (N,))."""
    raise NotImplementedError("Exercise 1: write row_scale_backward in lessons/exercises/ex01_row_scale.py")
