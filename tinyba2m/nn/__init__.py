"""Stateful modules composed into networks (``forward``/``backward``, ``params``/``grads``)."""
from .activations import ReLU, Sigmoid, Softmax
from .linear import Flatten, Linear
from .loss import SoftmaxCrossEntropy
from .module import Module, Sequential

__all__ = ["Module", "Sequential", "Linear", "Flatten", "ReLU", "Sigmoid", "Softmax", "SoftmaxCrossEntropy"]

from .batchnorm import BatchNorm1d, BatchNorm2d  # noqa: E402
from .conv import Conv2d  # noqa: E402

__all__ += ["Conv2d", "BatchNorm1d", "BatchNorm2d"]

from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d  # noqa: E402

__all__ += ["MaxPool2d", "AvgPool2d", "GlobalAvgPool2d"]

from .focal import FocalLoss  # noqa: E402

__all__ += ["FocalLoss"]
