"""PNG plots of a run, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

- :func:`plot_curves`             loss and accuracy per epoch (``curves.png``)
- :func:`plot_weight_distribution` BA²M per-sample weights per epoch as box plots: box = 25-75 %,
                                   line = median, whiskers = 5-95 %, dots = min / max, cross =
                                   mean (``weights.png``)
- :func:`plot_weighted_samples`   the training images with the highest and the lowest weights of
                                   an epoch, un-normalised, with class names (``weighted_samples.png``)

Every function writes atomically (temporary file + rename).
"""
from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
    ax_l.plot(ep, [r["test_loss_batch"] for r in rows], "s-", label="test CE, eval weighting batch")
    ax_l.plot(ep, [r["test_loss_uniform"] for r in rows], "^--", label="test CE, eval weighting uniform")
    ax_l.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_a.plot(ep, [100 * r["train_acc"] for r in rows], "o-", label="train top-1")
    ax_a.plot(ep, [100 * r["test_top1_batch"] for r in rows], "s-", label="test top-1 (batch)")
    ax_a.plot(ep, [100 * r["test_top1_uniform"] for r in rows], "^--", label="test top-1 (uniform)")
    ax_a.plot(ep, [100 * r["test_top5_batch"] for r in rows], "s:", label="test top-5 (batch)")
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
    ax.set(xlabel="epoch", ylabel="per-sample weight $w_i$ (mean over BA²M modules)",
           title=title or "BA²M per-sample weights per epoch\nbox 25-75 %, whiskers 5-95 %, dots min/max, x mean")
    ax.title.set_fontsize(9)
    ax.yaxis.label.set_fontsize(8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    _save(fig, path)


def plot_weighted_samples(images, labels, weights, class_names, path, title: str = "") -> None:
    """Two rows of images: the highest weights (top) and the lowest (bottom).

    images (k, 3, H, W) uint8 host arrays (un-normalised, NCHW) for the chosen samples, highest
    first then lowest; labels (k,), weights (k,) host arrays; ``len(images)`` even.
    """
    k = len(images) // 2
    fig = Figure(figsize=(1.45 * max(k, 1), 3.9))
    axes = fig.subplots(2, max(k, 1), squeeze=False)
    for row, (offset, what) in enumerate(((0, "highest"), (k, "lowest"))):
        for j in range(max(k, 1)):
            ax = axes[row][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= k:
                continue
            i = offset + j
            ax.imshow(images[i].transpose(1, 2, 0), interpolation="nearest")
            ax.set_title(f"{class_names[int(labels[i])]}\nw={float(weights[i]):.3f}", fontsize=7)
        axes[row][0].set_ylabel(f"{what} w", fontsize=8)
    fig.suptitle(title or "training images with the highest (top) and lowest (bottom) BA²M weight", fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.02, top=0.8, wspace=0.08, hspace=0.45)  # no tight_layout: slow
    _save(fig, path)
