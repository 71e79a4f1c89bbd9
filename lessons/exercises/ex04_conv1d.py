"""Exercise 4 (lesson 4): 1-D convolution, stride 1, no padding, no bias.

    out[n, f, i] = sum_{c, k} w[f, c, k] * x[n, c, i + k]      x (N, C, L), w (F, C, K) -> out (N, F, L-K+1)

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex04_conv1d:conv1d_forward --shapes 2,3,7 4,3,3
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)


def conv1d_forward(x, w):
    """Return (out (N, F, L-K+1), cache)."""
    raise NotImplementedError("Exercise 4: write conv1d_forward in lessons/exercises/ex04_conv1d.py")


def conv1d_backward(dout, cache):
    """Return (dx (N, C, L), dw (F, C, K))."""
    raise NotImplementedError("Exercise 4: write conv1d_backward in lessons/exercises/ex04_conv1d.py")
