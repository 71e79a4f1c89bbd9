"""Stateful modules composed into networks (``forward``/``backward``, ``params``/``grads``)."""
from .activations import ReLU, Sigmoid, Softmax
from .linear import Flatten, Linear
from .loss import SoftmaxCrossEntropy
from .module import Module, Sequential

__all__ = ["Module", "Sequential", "Linear", "Flatten", "ReLU", "Sigmoid", "Softmax", "SoftmaxCrossEntropy"]
