"""What the two studies share: the frame of their command lines, training one cell, the spread
over the seeds and the bars of their plots (a dot per seed)."""
from __future__ import annotations

import argparse
import math
import statistics
import time

from ..training.loop import NonFiniteLossError
from ..training.metrics import read_rows
from ..training.trainer import METRICS, Trainer


def names(text: str) -> tuple:
    """A comma-separated option: ``"a,b,"`` -> ``("a", "b")``."""
    return tuple(x for x in text.split(",") if x)


def study_parser(name: str, doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The parser of ``python -m tinyba2m.study <name>``: the study's docstring ``doc`` from its
    second paragraph on as the description, and ``--quick``, the bounded grid."""
    p = argparse.ArgumentParser(prog=f"python -m tinyba2m.study {name}", description=doc.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the bounded grid: " + quick_help)
    return p


def train_cell(cfg, data, folder) -> tuple:
    """Train ``cfg`` from scratch in ``folder`` (a pathlib.Path): ``(diverged, stop, rows, seconds)``,
    ``stop`` the error that stopped a diverged run ("" otherwise), ``rows`` its metrics.csv."""
    t0 = time.perf_counter()
    diverged, stop = False, ""
    try:
        Trainer(cfg, data=data, log=lambda msg: None).run()
    except NonFiniteLossError as exc:  # the run-away guard's error is a kind of it
        diverged, stop = True, str(exc)
    rows = read_rows(folder / METRICS) if (folder / METRICS).exists() else []
    return diverged, stop, rows, round(time.perf_counter() - t0, 1)


def mean_std(values) -> tuple:
    """``(mean, sample std, n)`` of the values that are not NaN; ``(nan, nan, 0)`` if none is."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def seed_bar(ax, j: int, ys, colour: str) -> None:
    """Bar ``j`` of a panel at the mean of ``ys``, with a dot per seed (nothing for no value)."""
    if ys:
        ax.bar(j, statistics.fmean(ys), color=colour, alpha=0.35)
        ax.plot([j] * len(ys), ys, "o", color=colour, ms=3)


def baseline_line(ax, ys, label: str, fontsize: int) -> None:
    """A dashed line across a panel at the mean of the baseline's ``ys``, in its legend as ``label``."""
    if ys:
        ax.axhline(statistics.fmean(ys), color="k", ls="--", lw=0.8, label=label)
        ax.legend(fontsize=fontsize, loc="lower left")
