"""tinyba2m — a from-scratch deep-learning framework that teaches and trains BA²M.

Every op is a forward/backward pair derived by hand (``tinyba2m.ops``), wrapped by thin
modules (``tinyba2m.nn``) and checked against finite differences (``tinyba2m.gradcheck``).
The array module (NumPy or CuPy) is chosen in one place: ``tinyba2m.backend``.
"""
__version__ = "0.1.0"
__all__ = ["backend"]

from . import backend  # noqa: E402
