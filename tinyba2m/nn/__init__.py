"""Stateful modules composed into networks (``forward``/``backward``, ``params``/``grads``)."""
from .activations import ReLU, Sigmoid, Softmax
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNormReLU2d
from .conv import Conv2d
from .focal import FocalLoss
from .linear import Flatten, Linear
from .loss import Loss, SoftmaxCrossEntropy
from .module import Module, OpModule, Sequential
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ = ["Module", "OpModule", "Sequential", "Linear", "Flatten", "Conv2d", "BatchNorm1d", "BatchNorm2d", "BatchNormReLU2d",
           "ReLU", "Sigmoid", "Softmax", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d",
           "Loss", "SoftmaxCrossEntropy", "FocalLoss"]
