"""The BA²M readings study: every reading of the method, trained in every kind of network.

    python -m tinyba2m.study ba2m --quick          # the bounded grid (< 15 minutes on 2 cores)
    python -m tinyba2m.study ba2m                  # the full grid (hours on a CPU)
    python -m tinyba2m.study ba2m --datasets digits --models smallcnn,resnet20 --seeds 0,1,2

A *cell* is one training run: data set x model x placement x init x reading x seed. A *reading*
is ``none`` (no attention, the baseline) or ``<sar>+<normalisation>`` of BA²M, e.g.
``sigmoid+softmax`` (the default) or ``none+softmax`` (the first, raw reading). Each cell records:
whether it diverged (non-finite loss, or stopped by the trainer's run-away guard), its final
training loss, test top-1 under the three eval weightings (population, batch, uniform) and the
largest BA²M weight any sample got. Results go to ``<out>/cells.csv`` one row per cell as soon
as it finishes; a rerun with the same ``--out`` skips the cells already there (nothing is lost
when a long study is interrupted). ``<out>/summary.md`` gives mean and spread over the seeds: one
table per data set with a column per reading, then every group in full; ``<out>/summary.png``
shows each seed as a dot.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import pathlib
import shutil
import sys

from .. import backend
from ..attention.ba2m import EVAL_WEIGHTINGS, NORMALISATIONS
from ..attention.sar import SAR_ACTIVATIONS
from ..data import load_dataset, make_synthetic
from ..models import INIT_SCHEMES, PLACEMENTS
from ..training.config import SYNTHETIC_DATA_SEED, TrainConfig
from ..training.metrics import append_record, read_records
from .grid import baseline_line, mean_std, names, seed_bar, study_parser, train_cell

READINGS = ("none",) + tuple(f"{s}+{n}" for s in SAR_ACTIVATIONS for n in NORMALISATIONS)
MODELS = ("smallcnn", "resnet20", "resnet56")
DATASETS = ("synthetic", "digits")
# Per data set, the data and epochs of every run: small enough for a CPU grid, enough to learn.
# synthetic: the generator behind --dataset synthetic, at 16x16 pixels with 10 classes (at 32x32 with
# 100 classes a CPU-sized run of a few thousand images stays near chance, and shows nothing);
# digits: scikit-learn's 8x8 digits, all of them (1,437 train / 360 test).
RECIPES = {"synthetic": {"train": 2000, "test": 500, "classes": 10, "image_size": 16, "epochs": 3},
           "digits": {"epochs": 3}}
QUICK = {"datasets": DATASETS, "models": ("smallcnn", "resnet20"), "placements": PLACEMENTS, "inits": ("he",),
         "readings": ("none", "sigmoid+softmax", "none+softmax"), "seeds": (0, 1, 2),
         "recipes": {"synthetic": {**RECIPES["synthetic"], "train": 1000}, "digits": RECIPES["digits"]}}
CELL_COLUMNS = ("dataset", "model", "placement", "init", "reading", "tau", "seed", "epochs", "train_images", "diverged",
                "stop", "train_loss") + tuple(f"top1_{m}" for m in EVAL_WEIGHTINGS) + ("max_weight", "seconds")
KEY = ("dataset", "model", "placement", "init", "reading", "tau", "seed")
# the grid's list options and the values each may take
CHOICES = {"datasets": DATASETS, "models": MODELS, "placements": PLACEMENTS, "inits": INIT_SCHEMES, "readings": READINGS}


def cell_config(dataset, model, placement, init, reading, tau, seed, recipe, out) -> TrainConfig:
    """The training options of one cell (the trainer's defaults for everything not named)."""
    cfg = TrainConfig(dataset=dataset, model=model, attention="none" if reading == "none" else "ba2m",
                      ba2m_placement=placement, init=init, seed=seed, ba2m_temperature=float(tau),
                      epochs=recipe["epochs"], out=str(out), progress=False)
    if reading != "none":
        cfg.ba2m_sar, cfg.ba2m_normalisation = reading.split("+")
    return cfg


def run_cell(cell: dict, recipe: dict, data, folder: pathlib.Path) -> dict:
    """Train one cell from scratch in ``folder`` and return its row (``CELL_COLUMNS``)."""
    diverged, stop, rows, seconds = train_cell(cell_config(*(cell[k] for k in KEY), recipe, folder), data, folder)
    last = rows[-1] if rows else {}
    row = {**cell, "epochs": recipe["epochs"], "train_images": int(data.train_images.shape[0]), "diverged": int(diverged),
           "stop": stop, "train_loss": last.get("train_loss", math.nan),
           "max_weight": max((r["max_weight"] for r in rows), default=math.nan), "seconds": seconds}
    for m in EVAL_WEIGHTINGS:  # a diverged run counts at chance level, not at its last good epoch
        row[f"top1_{m}"] = math.nan if diverged or not rows else last[f"test_top1_{m}"]
    return row


def _worker(job):
    cell, recipe, folder = job
    backend.use_backend("numpy")
    return run_cell(cell, recipe, study_data(cell["dataset"], recipe), pathlib.Path(folder))


_DATA_CACHE = {}


def study_data(name: str, recipe: dict):
    """The data set of a recipe (cached per process)."""
    key = (name, tuple(sorted(recipe.items())))
    if key not in _DATA_CACHE:
        if name == "synthetic":
            _DATA_CACHE[key] = make_synthetic(recipe["train"], recipe["test"], seed=SYNTHETIC_DATA_SEED,
                                              num_classes=recipe["classes"], image_size=recipe["image_size"])
        else:
            _DATA_CACHE[key] = load_dataset(name, progress=False)
    return _DATA_CACHE[key]


CHANCE = 10.0  # % top-1 of a guess: both data sets have 10 classes


def top1(cell: dict, mode: str = "population") -> float:
    """A cell's test top-1 % under eval weighting ``mode``; a diverged run counts at chance (its
    last good epoch is not its result)."""
    return CHANCE if int(cell["diverged"]) else 100 * float(cell[f"top1_{mode}"])


def no_attention(cells: list, dataset: str, model: str, init: str) -> list:
    """The no-attention cells of (data set, model, init): one run per seed serves every placement
    and temperature."""
    return [c for c in cells if c["reading"] == "none" and (c["dataset"], c["model"], c["init"]) == (dataset, model, init)]


def _stats(values, digits: int = 1):
    mean, sd, n = mean_std(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if n else "—"


def summarise(cells: list) -> str:
    """Markdown: one row per (data set, model, placement, init, reading), mean ± sample std over seeds."""
    groups = {}
    for c in cells:
        groups.setdefault(tuple(c[k] for k in KEY[:-1]), []).append(c)
    head = ("| data | model | placement | init | reading | tau | seeds | diverged | train loss | top-1 population % | "
            "top-1 batch % | top-1 uniform % | max weight |")
    lines = [head, "|" + "|".join(["---"] * 13) + "|"]
    order = lambda k: (k[0], MODELS.index(k[1]), k[2], k[3], READINGS.index(k[4]), float(k[5]))  # noqa: E731
    for key in sorted(groups, key=order):
        g = groups[key]
        column = lambda col: [float(c[col]) if c[col] not in ("", None) else math.nan for c in g]  # noqa: E731
        acc = [_stats([top1(c, m) for c in g]) for m in EVAL_WEIGHTINGS]
        weights = [v for v in column("max_weight") if not math.isnan(v)]
        cells_ = [*key, str(len(g)), str(sum(int(c["diverged"]) for c in g)), _stats(column("train_loss"), 3), *acc,
                  f"{max(weights):.3g}" if weights else "—"]
        lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines) + "\n"


def pivot(cells: list, mode: str = "population") -> str:
    """Markdown, one table per (data set, tau): a row per (model, placement, init), a column per
    reading, each cell "mean ± std" of test top-1 % under eval weighting ``mode`` over the seeds,
    with "(k div)" when k seeds diverged (counted at chance, 10 %)."""
    out = []
    for data, tau in sorted({(c["dataset"], c["tau"]) for c in cells}):
        mine = [c for c in cells if (c["dataset"], c["tau"]) == (data, tau)]
        readings = [r for r in READINGS if any(c["reading"] == r for c in cells if c["dataset"] == data)]
        rows = sorted({tuple(c[k] for k in KEY[1:4]) for c in mine}, key=lambda r: (MODELS.index(r[0]), r[1], r[2]))
        out.append(f"**{data}, tau = {tau}**: test top-1 % (eval weighting {mode}), mean ± std over seeds\n")
        out.append("| model | placement | init | " + " | ".join(readings) + " |")
        out.append("|" + "---|" * (3 + len(readings)))
        for row in rows:
            line = list(row)
            for r in readings:
                g = [c for c in mine if tuple(c[k] for k in KEY[1:4]) == row and c["reading"] == r]
                if not g and r == "none":
                    g = no_attention(cells, data, row[0], row[2])
                div = sum(int(c["diverged"]) for c in g)
                line.append((_stats([top1(c, mode) for c in g]) + (f" ({div} div)" if div else "")) if g else "")
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    return "\n".join(out)


def plot_summary(cells: list, path) -> None:
    """One panel per (data set, model): top-1 (population) per reading, a dot per seed, bar = mean."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    panels = sorted({tuple(c[k] for k in KEY[:4]) for c in cells}, key=lambda p: (p[0], MODELS.index(p[1]), p[2], p[3]))
    if not panels:
        return
    fig = Figure(figsize=(4.2 * min(len(panels), 4), 3.4 * math.ceil(len(panels) / 4)))
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(math.ceil(len(panels) / 4), min(len(panels), 4), i + 1)
        mine = [c for c in cells if tuple(c[k] for k in KEY[:4]) == panel]
        bars = sorted({(c["reading"], c["tau"]) for c in mine}, key=lambda rt: (READINGS.index(rt[0]), float(rt[1])))
        for j, (r, tau) in enumerate(bars):
            g = [c for c in mine if (c["reading"], c["tau"]) == (r, tau)]
            ys = [top1(c) for c in g]
            seed_bar(ax, j, ys, "tab:red" if any(int(c["diverged"]) for c in g) else "tab:blue")
        baseline_line(ax, [top1(c) for c in no_attention(cells, panel[0], panel[1], panel[3])], "no attention (mean)", 6)
        labels = [r if r == "none" or len({t for _, t in bars}) == 1 else f"{r} τ={float(t):g}" for r, t in bars]
        ax.set_xticks(range(len(bars)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("test top-1 % (population)", fontsize=8)
        ax.set_title(" / ".join(panel), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("BA²M readings: red = at least one seed diverged (counted at chance)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def build_parser() -> argparse.ArgumentParser:
    p = study_parser("ba2m", __doc__, f"data sets {', '.join(QUICK['datasets'])}; models {', '.join(QUICK['models'])}; "
                     f"placements {', '.join(QUICK['placements'])}; init he; readings {', '.join(QUICK['readings'])}; "
                     f"seeds 0,1,2; synthetic 1,000 images x 3 epochs, digits 3 epochs")
    p.add_argument("--datasets", type=names, default=DATASETS, help="comma-separated (default: all: %(default)s)")
    for name in ("models", "placements", "inits", "readings"):
        p.add_argument(f"--{name}", type=names, default=CHOICES[name], help="comma-separated (default: %(default)s)")
    p.add_argument("--temperatures", type=lambda s: tuple(str(float(x)) for x in s.split(",")), default=("1.0",),
                   help="comma-separated BA²M temperatures tau (default: 1.0, the spec's value)")
    p.add_argument("--seeds", type=lambda s: tuple(int(x) for x in s.split(",")), default=(0, 1, 2),
                   help="comma-separated seeds, at least 3 for a spread (default: 0,1,2)")
    p.add_argument("--epochs", type=int, default=None, help="override the epochs of every data set's recipe")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="cells trained in parallel, one BLAS thread each (default: %(default)s)")
    p.add_argument("--out", default="studies/ba2m", help="results folder (default: %(default)s); rerunning "
                                                         "with the same folder skips finished cells")
    p.add_argument("--summary-only", action="store_true", help="only rewrite summary.md/png from cells.csv")
    return p


def _check(parser, args) -> None:
    for name, ok in CHOICES.items():
        bad = [v for v in getattr(args, name) if v not in ok]
        if bad:
            parser.error(f"--{name}: unknown {', '.join(bad)}; choose from {', '.join(ok)}")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        for k in (*CHOICES, "seeds"):
            setattr(args, k, QUICK[k])
    _check(parser, args)
    epochs = {"epochs": args.epochs} if args.epochs else {}
    recipes = {k: {**v, **epochs} for k, v in (QUICK["recipes"] if args.quick else RECIPES).items()}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells_csv = out / "cells.csv"
    if not args.summary_only:
        done = {tuple(c[k] for k in KEY) for c in read_records(cells_csv)}
        todo = []
        for values in itertools.product(args.datasets, args.models, args.placements, args.inits, args.readings,
                                        args.temperatures, args.seeds):
            cell = dict(zip(KEY, values))
            if cell["reading"] == "none" and (cell["tau"], cell["placement"]) != (args.temperatures[0],
                                                                                 args.placements[0]):
                continue  # no attention: temperature and placement mean nothing, one cell per seed
            if tuple(str(v) for v in cell.values()) in done:
                continue
            folder = out / "runs" / "_".join(str(v) for v in cell.values())
            if folder.exists():  # a cell interrupted half-way starts again
                shutil.rmtree(folder)
            todo.append((cell, recipes[cell["dataset"]], str(folder)))
        print(f"BA²M study -> {out}: {len(todo)} cells to run ({len(done)} already done), {args.jobs} at a time",
              flush=True)
        _run_all(todo, args.jobs, cells_csv)
    cells = read_records(cells_csv)
    (out / "summary.md").write_text(pivot(cells) + "\nEvery group (test top-1 % under the three eval weightings, "
                                    "training loss, largest weight):\n\n" + summarise(cells))
    plot_summary(cells, out / "summary.png")
    print(summarise(cells), flush=True)
    print(f"wrote {out / 'cells.csv'}, {out / 'summary.md'}, {out / 'summary.png'}", flush=True)
    return 0


def _run_all(todo, jobs, cells_csv) -> None:
    from tqdm import tqdm
    bar = tqdm(total=len(todo), unit="cell", file=sys.stderr, dynamic_ncols=True)
    try:
        if jobs == 1:
            results = map(_worker, todo)
        else:
            import multiprocessing
            os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers: one BLAS thread per cell
            pool = multiprocessing.get_context("spawn").Pool(jobs)
            results = pool.imap_unordered(_worker, todo)
        for row in results:
            append_record(cells_csv, CELL_COLUMNS, row)
            bar.update(1)
            result = "diverged" if row["diverged"] else f"{100 * row['top1_population']:.1f}%"
            bar.set_postfix_str(f"{row['dataset']}/{row['model']}/{row['reading']}/s{row['seed']}: {result}")
        if jobs > 1:
            pool.close()
            pool.join()
    finally:
        bar.close()

