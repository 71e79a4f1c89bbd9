"""Counters of what would be slow on a GPU: host syncs (device-to-host reads) and array-module calls.

``syncs`` counts every blocking read (``to_host``/``.get()``, ``float``/``int``/``bool``,
``.item()``, ``.tolist()``, ``repr``/``str``, boolean-mask indexing and the functions whose CuPy
implementation reads a value back, such as ``bincount`` and ``nonzero``); ``calls`` counts every
call of a function of the simulated array module (its ufuncs, their methods and its submodules'
functions included; array methods and operators are not counted). ``by_kind`` counts the reads by
kind (``"get"``, ``"float"``, ``"cupy.bincount"``...), to say where a budget was broken.
"""
from __future__ import annotations

syncs = 0
calls = 0
by_kind: dict = {}


def sync(kind: str) -> None:
    global syncs
    syncs += 1
    by_kind[kind] = by_kind.get(kind, 0) + 1


def call() -> None:
    global calls
    calls += 1


def read() -> dict:
    return {"syncs": syncs, "calls": calls, "sync_kinds": dict(by_kind)}


def reset() -> None:
    global syncs, calls
    syncs = calls = 0
    by_kind.clear()
