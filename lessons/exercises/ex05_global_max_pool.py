"""Exercise 5 (lesson 5): global max pooling, (N, C, H, W) -> (N, C), gradient routed to the argmax.

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex05_global_max_pool:global_max_pool_forward --shapes 2,3,4,4
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)


def global_max_pool_forward(x):
    """Return (out (N, C), cache)."""
    raise NotImplementedError("Exercise 5: write global_max_pool_forward in lessons/exercises/ex05_global_max_pool.py")


def global_max_pool_backward(dout, cache):
    """Return dx (N, C, H, W)."""
    raise NotImplementedError("Exercise 5: write global_max_pool_backward in lessons/exercises/ex05_global_max_pool.py")
