"""Exercise 6 (lesson 6): layer normalisation of x (N, D) over its D features, with gamma, beta (D,).

    out[n, d] = gamma[d] * (x[n, d] - mean_n) / sqrt(var_n + EPS) + beta[d]

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex06_layer_norm:layer_norm_forward --shapes 4,5 5 5
"""
from tinyba2m import backend  # noqa: F401  (use backend.array_module(x) to get xp)

EPS = 1e-5


def layer_norm_forward(x, gamma, beta):
    """Return (out (N, D), cache)."""
    raise NotImplementedError("Exercise 6: write layer_norm_forward in lessons/exercises/ex06_layer_norm.py")


def layer_norm_backward(dout, cache):
    """Return (dx (N, D), dgamma (D,), dbeta (D,))."""
    raise NotImplementedError("Exercise 6: write layer_norm_backward in lessons/exercises/ex06_layer_norm.py")
