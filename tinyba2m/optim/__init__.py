"""Optimisation: SGD with momentum / Nesterov / weight decay, and learning-rate schedules."""
from .schedules import SCHEDULES, learning_rate
from .sgd import SGD, default_decay_filter

__all__ = ["SGD", "default_decay_filter", "learning_rate", "SCHEDULES"]
