"""Exercise 8 (lesson 8): the 1x1 convolution, a linear layer applied at every pixel.

    out[n, f, y, x] = sum_c w[f, c] * x[n, c, y, x] + b[f]      x (N, C, H, W), w (F, C), b (F,)

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex08_conv1x1:conv1x1_forward --shapes 2,3,4,4 5,3 5
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)


def conv1x1_forward(x, w, b):
    """Return (out (N, F, H, W), cache)."""
    raise NotImplementedError("Exercise 8: write conv1x1_forward in lessons/exercises/ex08_conv1x1.py")


def conv1x1_backward(dout, cache):
    """Return (dx (N, C, H, W), dw (F, C), db (F,))."""
    raise NotImplementedError("Exercise 8: write conv1x1_backward in lessons/exercises/ex08_conv1x1.py")
