"""Reproducible experiment grids: ``python -m tinyba2m.study ba2m [--quick]`` (the BA²M readings,
see :mod:`.ba2m`) and ``python -m tinyba2m.study paper [--quick]`` (the paper's comparison, see
:mod:`.paper`)."""
