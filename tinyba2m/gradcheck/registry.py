"""The named checks that ``python -m tinyba2m.gradcheck`` runs.

A case is a function of no arguments returning a :class:`CheckResult`; register it with
``@register("name")`` in one of the files of ``tinyba2m/gradcheck/cases/`` (one file per
concern), or, for cases that differ only in the arguments of one helper,
``register_with("name", helper, *args, **kwargs)``. ``all_cases()`` imports those files and
returns the cases by name.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil

_CASES: dict = {}


def register(name: str):
    def deco(fn):
        if name in _CASES and _CASES[name] is not fn:
            raise ValueError(f"gradcheck case {name!r} is registered twice")
        _CASES[name] = fn
        return fn
    return deco


def register_with(name: str, case, *args, **kwargs):
    """Register ``case(name, *args, **kwargs)`` as the check ``name``."""
    return register(name)(functools.partial(case, name, *args, **kwargs))


def all_cases() -> dict:
    from . import cases
    for info in pkgutil.iter_modules(cases.__path__):
        importlib.import_module(f"{cases.__name__}.{info.name}")
    return dict(_CASES)
