"""Where a lesson's figure goes.

``save(fig, "im2col")`` writes ``<folder>/im2col.png`` when the environment variable
``TINYBA2M_LESSON_FIGURES`` names a folder (the tests set it to a temporary folder; the committed
PNGs in ``lessons/figures/`` were written with ``TINYBA2M_LESSON_FIGURES=lessons/figures``), and
otherwise writes nothing, so running a lesson never changes the repository. In a notebook the figure
is shown under the cell; elsewhere it is closed (matplotlib's non-interactive Agg backend).
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

ENV = "TINYBA2M_LESSON_FIGURES"


def save(fig, name: str):
    """Save ``fig`` as ``<$TINYBA2M_LESSON_FIGURES>/<name>.png`` if the variable is set; return the path or None."""
    folder = os.environ.get(ENV)
    path = None
    if folder:
        path = Path(folder) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    if "inline" not in matplotlib.get_backend():
        plt.close(fig)
    return path
