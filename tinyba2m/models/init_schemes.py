"""Weight initialisation schemes of a whole model (``build_model(..., init=...)``).

- ``"he"`` (default): what every layer draws when built — He-normal conv / linear weights
  (std ``sqrt(2 / fan_in)``), zero conv biases, linear biases ``U(+-1/sqrt(fan_in))``.
- ``"torch"``: PyTorch's default for ``nn.Conv2d`` / ``nn.Linear``: weights from
  ``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(+-1/sqrt(fan_in))`` (gain ``sqrt(2 / (1 + a^2))``
  times ``sqrt(3 / fan_in)``), and biases ``U(+-1/sqrt(fan_in))``; fan_in = in_channels * KH * KW
  for a conv, in_features for a linear layer. BN layers keep scale 1 and shift 0 in both.

Redrawn from the backend's seeded host generator, in module order, so a seed fixes the result.
"""
from __future__ import annotations

from ..nn import Conv2d, Linear
from ..nn.init import uniform_fan_in

INIT_SCHEMES = ("he", "torch")


def apply_init(model, scheme: str = "he"):
    """Re-initialise ``model``'s conv and linear layers with ``scheme``; returns the model."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}: expected one of {', '.join(INIT_SCHEMES)}")
    if scheme == "he":
        return model
    for _, mod in model.named_modules():
        if isinstance(mod, Conv2d):
            fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, Linear):
            fan_in = mod.in_features
        else:
            continue
        for key, p in mod.params.items():
            mod.params[key] = uniform_fan_in(p.shape, fan_in, p.dtype)
    return model
