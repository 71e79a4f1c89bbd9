"""Exercise 9 (lesson 9): scaled dot-product attention, batched.

    out = softmax_m(q @ k^T / sqrt(d)) @ v      q (N, L, d), k (N, M, d), v (N, M, e) -> out (N, L, e)

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex09_attention:attention_forward --shapes 2,5,3 2,4,3 2,4,2
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)


def attention_forward(q, k, v):
    """Return (out (N, L, e), cache)."""
    raise NotImplementedError("Exercise 9: write attention_forward in lessons/exercises/ex09_attention.py")


def attention_backward(dout, cache):
    """Return (dq (N, L, d), dk (N, M, d), dv (N, M, e))."""
    raise NotImplementedError("Exercise 9: write attention_backward in lessons/exercises/ex09_attention.py")
