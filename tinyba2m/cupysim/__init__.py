"""cupysim: a CPU stand-in for CuPy that is as strict as CuPy and counts what a GPU makes slow.

Memory stays on the host and NumPy computes, but the array type (:class:`ndarray`) and the module
(:data:`module`, the backend's ``xp`` under ``use_backend("cupysim")``) follow CuPy's rules: no
implicit conversion to NumPy, no NumPy operands, exactly CuPy's names and keyword arguments.
Device-to-host reads and module calls are counted (:mod:`tinyba2m.cupysim.counters`).

Names come from the installed ``cupy`` when it imports (no GPU is needed for that), else from the
committed ``cupy_namespace.json``; ``python -m tinyba2m.cupysim --write-snapshot`` regenerates it.
"""
from __future__ import annotations

from tinyba2m.cupysim import counters
from tinyba2m.cupysim.array import ndarray
from tinyba2m.cupysim.arraymodule import MODULE as module

namespace_source = module.__namespace_source__

__all__ = ["counters", "module", "ndarray", "namespace_source"]
