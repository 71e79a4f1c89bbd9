"""Gradient-check cases, one file per concern; each registers its cases on import."""
