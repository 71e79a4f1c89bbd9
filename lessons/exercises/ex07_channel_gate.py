"""Exercise 7 (lesson 7): a channel gate, y = x * sigmoid(GAP(x) @ w + b) per channel.

    s = mean over (H, W) of x       (N, C)
    g = sigmoid(s @ w + b)          (N, C),   w (C, C), b (C,)
    y = x * g[:, :, None, None]     (N, C, H, W)

Check from the repository root:
    python -m tinyba2m.gradcheck --target lessons.exercises.ex07_channel_gate:ChannelGate --input-shape 3,4,5,5
"""
from tinyba2m.nn import Module
from tinyba2m.nn.init import uniform_fan_in
from tinyba2m.ops.activations import stable_sigmoid  # noqa: F401  (a numerically stable sigmoid)


class ChannelGate(Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.channels = channels
        self.params["w"] = uniform_fan_in((channels, channels), channels)
        self.params["b"] = uniform_fan_in((channels,), channels)

    def forward(self, x):
        """x (N, C, H, W) -> y (N, C, H, W); remember what backward needs."""
        raise NotImplementedError("Exercise 7: write ChannelGate.forward in lessons/exercises/ex07_channel_gate.py")

    def backward(self, dout):
        """Return dx (N, C, H, W); add dw, db with self.accumulate_grad."""
        raise NotImplementedError("Exercise 7: write ChannelGate.backward in lessons/exercises/ex07_channel_gate.py")
