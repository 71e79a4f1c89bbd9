"""Benchmarks: ``python -m tinyba2m.bench [--quick] [--json PATH]``."""
