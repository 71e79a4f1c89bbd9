"""Solution of exercise 7: a channel gate with one linear layer.

x reaches y directly and through the gate:
    dg = sum_{y,x} dout * x   (N, C)        du = dg * g * (1 - g)   (N, C)
    dw = s^T du,  db = sum_n du,  ds = du @ w^T
    dx = dout * g + ds / (H W)   (broadcast over H, W)
"""
from tinyba2m.nn import Module
from tinyba2m.nn.init import uniform_fan_in
from tinyba2m.ops.activations import stable_sigmoid


class ChannelGate(Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.channels = channels
        self.params["w"] = uniform_fan_in((channels, channels), channels)
        self.params["b"] = uniform_fan_in((channels,), channels)
        self.cache = None

    def forward(self, x):
        s = x.mean(axis=(2, 3))
        g = stable_sigmoid(s @ self.params["w"] + self.params["b"])
        self.cache = (x, s, g)
        return x * g[:, :, None, None]

    def backward(self, dout):
        x, s, g = self.cache
        dg = (dout * x).sum(axis=(2, 3))
        du = dg * g * (1 - g)
        self.accumulate_grad("w", s.T @ du)
        self.accumulate_grad("b", du.sum(axis=0))
        ds = du @ self.params["w"].T
        hw = x.shape[2] * x.shape[3]
        return dout * g[:, :, None, None] + (ds / hw)[:, :, None, None]
