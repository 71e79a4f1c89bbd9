"""Reproducible experiment grids: ``python -m tinyba2m.study ba2m [--quick]`` (see :mod:`.ba2m`)."""
