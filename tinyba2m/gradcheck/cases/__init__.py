"""Gradient-check cases, one file per concern; each registers its cases on import.

The two helpers below are the plain cases that ``register_with`` registers by their arguments alone.
"""
from __future__ import annotations

from ... import backend
from ..checker import check_module, check_op
from .inputs import normal


def op_case(name, forward, backward, *inputs):
    """``check_op`` on standard normal inputs, each given as ``(input name, shape, seed)``."""
    return check_op(forward, backward, [normal(shape, seed) for _, shape, seed in inputs],
                    names=[label for label, _, _ in inputs], name=name)


def module_case(name, make, shape, **kwargs):
    """``check_module(make(), shape, **kwargs)``, the module built right after ``backend.seed(0)``."""
    backend.seed(0)
    return check_module(make(), shape, name=name, **kwargs)
