"""PNG plots of a run, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

- :func:`plot_curves`             loss and accuracy per epoch (``curves.png``)
- :func:`plot_weight_distribution` BA²M per-sample weights per epoch as box plots (log axis, labelled
                                   round ticks, :func:`weight_ticks`): box = 25-75 %,
                                   line = median, whiskers = 5-95 %, dots = min / max, cross =
                                   mean (``weights.png``)
- :func:`plot_weighted_samples`   the training images with the highest and the lowest weights of
                                   an epoch, un-normalised, with class names (``weighted_samples.png``)

Every function writes atomically (temporary file + rename).
"""
from __future__ import annotations

import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .. import backend
from ..attention.ba2m import EVAL_WEIGHTINGS
from .checkpoint import atomic_write


def _save(fig, path) -> None:
    FigureCanvasAgg(fig)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def plot_curves(rows, path, title: str = "") -> None:
    """``rows``: metrics.csv rows (dicts) -> two panels: losses, accuracies (%)."""
    ep = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4))
    ax_l, ax_a = fig.subplots(1, 2)
    ax_l.plot(ep, [r["train_loss"] for r in rows], "o-", label="train (objective)")
    ax_a.plot(ep, [100 * r["train_acc"] for r in rows], "o-", label="train top-1")
    modes = [m for m in EVAL_WEIGHTINGS if rows and f"test_loss_{m}" in rows[0]]  # older files lack population
    styles = dict(zip(EVAL_WEIGHTINGS, ("s-", "v-.", "^--")))
    for mode in modes:
        ax_l.plot(ep, [r[f"test_loss_{mode}"] for r in rows], styles[mode], label=f"test CE, eval weighting {mode}")
        ax_a.plot(ep, [100 * r[f"test_top1_{mode}"] for r in rows], styles[mode], label=f"test top-1 ({mode})")
    if modes:
        ax_a.plot(ep, [100 * r[f"test_top5_{modes[0]}"] for r in rows], "s:", label=f"test top-5 ({modes[0]})")
    ax_l.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_a.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if ep:
            ax.set_xticks(ep if len(ep) <= 20 else ep[:: max(1, len(ep) // 10)])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def weight_ticks(lo: float, hi: float, count: int = 8) -> list:
    """Tick values for a log axis showing weights from ``lo`` to ``hi`` (and 1): about ``count``
    evenly spaced round values (steps of 1, 2, 2.5 or 5 times a power of ten) when the range spans
    less than a decade, else 1, 2 and 5 times each power of ten. [] for a non-positive or NaN range."""
    lo, hi = min(float(lo), 1.0), max(float(hi), 1.0)
    if not (lo > 0 and math.isfinite(hi)):
        return []
    if hi / lo >= 10:
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        return [round(m * 10.0 ** k, 12) for k in decades for m in (1, 2, 5) if lo / 2 <= m * 10.0 ** k <= hi * 2]
    raw = (hi - lo) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(i * step, 12) for i in range(first, last + 1) if i * step > 0]


def plot_weight_distribution(stats_rows, path, title: str = "") -> None:
    """``stats_rows``: ba2m_weights.csv rows (see metrics.WEIGHT_COLUMNS) -> a box per epoch."""
    fig = Figure(figsize=(max(5, 0.45 * len(stats_rows) + 3), 4))
    ax = fig.subplots()
    boxes = [{"label": str(r["epoch"]), "med": r["median"], "q1": r["p25"], "q3": r["p75"], "whislo": r["p05"],
              "whishi": r["p95"], "mean": r["mean"], "fliers": [r["min"], r["max"]]} for r in stats_rows]
    if boxes:
        ax.bxp(boxes, showmeans=True, showfliers=True,
               flierprops={"marker": ".", "markersize": 4}, meanprops={"marker": "x", "markeredgecolor": "k"})
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")  # w > 0 with mean 1: a few large weights would squash the boxes on a linear axis
    ticks = weight_ticks(min((r["min"] for r in stats_rows), default=1.0), max((r["max"] for r in stats_rows), default=1.0))
    if ticks:        # a log axis labels only its decades (0.9, 1): enough labelled ticks to read a weight off
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set(xlabel="epoch", ylabel="per-sample weight $w_i$ (mean over BA²M modules)",
           title=title or "BA²M per-sample weights per epoch\nbox 25-75 %, whiskers 5-95 %, dots min/max, x mean")
    ax.title.set_fontsize(9)
    ax.yaxis.label.set_fontsize(8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    _save(fig, path)


def plot_weighted_samples(images, labels, weights, class_names, path, title: str = "") -> None:
    """Two rows of images: the highest weights (top) and the lowest (bottom), each with its class
    name and weight, on one white canvas (``pad`` pixels between images, ``top`` above each row
    for its labels).

    images (2k, 3, H, W) uint8 host array (un-normalised, NCHW) of the chosen samples, the k
    highest first, then the k lowest; labels (2k,), weights (2k,) host arrays.
    """
    np = backend.numpy_module  # host images
    n, c, h, w = images.shape
    k = max(n // 2, 1)
    rows = -(-n // k)
    pad, top = max(2, w // 8), max(8, int(0.6 * h))
    canvas = np.full((rows * (h + top), k * (w + pad) + pad, c), 255, dtype=np.uint8)
    fig = Figure(figsize=(1.3 * k + 0.9, 1.3 * canvas.shape[0] / (w + pad) + 0.5))
    ax = fig.add_axes([0.08, 0.0, 0.91, 0.9])
    for i in range(n):  # at most 2 x 8 images
        r, q = divmod(i, k)
        y, x = r * (h + top) + top, pad + q * (w + pad)
        canvas[y:y + h, x:x + w] = images[i].transpose(1, 2, 0)
        ax.text(x + w / 2, y - 1, f"{class_names[int(labels[i])]}\nw={float(weights[i]):.3f}", ha="center",
                va="bottom", fontsize=7)
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (h + top) + top + h / 2 for r in range(rows)], ["highest w", "lowest w"][:rows], fontsize=8)
    ax.spines[:].set_visible(False)
    fig.suptitle(title or "training images with the highest (top) and lowest (bottom) BA²M weight", fontsize=9)
    _save(fig, path)
