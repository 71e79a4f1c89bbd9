"""Exercise 11 (lesson 11): sum-normalised sigmoid weights across the batch.

    s = sigmoid(a)   (N,)      w_i = N * s_i / sum_j s_j      Y_i = w_i * X_i      x (N, D)

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex11_sigmoid_batch_weighting:sigmoid_batch_weighting_forward --shapes 4,3 4
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)


def sigmoid_batch_weighting_forward(x, a):
    """Return (Y (N, D), cache)."""
    raise NotImplementedError("Exercise 11: write sigmoid_batch_weighting_forward in lessons/exercises/ex11_sigmoid_batch_weighting.py")


def sigmoid_batch_weighting_backward(dout, cache):
    """Return (dx (N, D), da (N,))."""
    raise NotImplementedError("Exercise 11: write sigmoid_batch_weighting_backward in lessons/exercises/ex11_sigmoid_batch_weighting.py")
