"""Exercise 12 (lesson 12): a residual block of two linear layers.

    h   = relu(x @ w1 + b1)              x (N, D), w1 (D, D), b1 (D,)
    out = relu(x + h @ w2 + b2)          w2 (D, D), b2 (D,)

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex12_residual_linear:ResidualLinear --input-shape 3,4
"""
from tinyba2m.nn import Module
from tinyba2m.nn.init import he_normal, uniform_fan_in


class ResidualLinear(Module):
    def __init__(self, features: int = 4):
        super().__init__()
        self.features = features
        self.params["w1"] = he_normal((features, features), features)
        self.params["b1"] = uniform_fan_in((features,), features)
        self.params["w2"] = he_normal((features, features), features)
        self.params["b2"] = uniform_fan_in((features,), features)

    def forward(self, x):
        """x (N, D) -> out (N, D); remember what backward needs."""
        raise NotImplementedError("Exercise 12: write ResidualLinear.forward in lessons/exercises/ex12_residual_linear.py")

    def backward(self, dout):
        """Return dx (N, D); add the four parameter gradients with self.accumulate_grad."""
        raise NotImplementedError("Exercise 12: write ResidualLinear.backward in lessons/exercises/ex12_residual_linear.py")
