"""Exercise 10 (lesson 10): the sigmoid SAR of a channel map and one spatial map.

    out[i] = mean_{c, y, x} sigmoid(max(a_c[i, c], a_s[i, y, x]))      a_c (N, C), a_s (N, H, W) -> out (N,)
    (the channel wins ties)

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex10_max_mean:sigmoid_max_mean_forward --shapes 2,3 2,4,4
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)


def sigmoid_max_mean_forward(a_c, a_s):
    """Return (out (N,), cache)."""
    raise NotImplementedError("Exercise 10: write sigmoid_max_mean_forward in lessons/exercises/ex10_max_mean.py")


def sigmoid_max_mean_backward(dout, cache):
    """Return (da_c (N, C), da_s (N, H, W))."""
    raise NotImplementedError("Exercise 10: write sigmoid_max_mean_backward in lessons/exercises/ex10_max_mean.py")
