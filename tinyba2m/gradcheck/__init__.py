"""Gradient checking: finite differences in float64 against hand-derived backward passes.

Library use::

    from tinyba2m.gradcheck import check_op, check_module
    print(check_module(MyLayer(), (2, 3, 5, 5)))

Command line: ``python -m tinyba2m.gradcheck [NAME ...]`` or ``--target pkg.module:Name``.
"""
from .checker import DEFAULT_TOLERANCE, CheckResult, check_module, check_op
from .numeric import directional_derivative, numerical_gradient, relative_error
from .registry import all_cases, register

__all__ = ["CheckResult", "check_module", "check_op", "numerical_gradient", "directional_derivative",
           "relative_error", "register", "all_cases", "DEFAULT_TOLERANCE"]
