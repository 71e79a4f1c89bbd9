"""The paper's comparison in one command: BA²M against classical attention and loss re-weighting.

    python -m tinyba2m.study paper                 # CIFAR-100, the standard recipe (days on a CPU)
    python -m tinyba2m.study paper --quick         # a bounded grid on the synthetic set (about a minute)
    python -m tinyba2m.study paper --models resnet20 --methods none,ba2m --epochs 30 --seeds 0,1,2

A *run* is one training from scratch: model x method x seed. The methods: ``none`` (no attention),
``se`` (squeeze-and-excitation), ``cbam``, ``bam`` (the classical intra-sample attention modules),
``focal`` (the focal loss, gamma 2, no attention: a loss-based re-weighting), ``ba2m`` (BA²M with
the default options) and ``ba2m-every`` (BA²M in every block). The standard recipe: CIFAR-100,
batch 128, SGD (momentum 0.9, weight decay 5e-4), lr 0.1 with a cosine schedule, 200 epochs.

Before it starts, the study prints how many runs it will train and an estimate of the total time,
from a training step of each (model, method) measured here, on this backend. Each finished run
is appended to ``<out>/cells.csv`` at once: a rerun of the same command (after Ctrl-C, a crash or
a reboot) skips the runs there and starts the interrupted one again. ``<out>/summary.md`` gives
the last-epoch test top-1 of each method (mean ± std over the seeds) and its difference from
``none`` (± the standard error of the difference of the two means); ``<out>/summary.png`` shows
each seed as a dot. The runs' folders (metrics.csv, curves, checkpoints) are in ``<out>/runs/``.
"""
from __future__ import annotations

import argparse
import itertools
import math
import pathlib
import shutil
import statistics
import sys
import time

from .. import backend
from ..data import load_dataset, make_synthetic
from ..data.cifar100 import DatasetError
from ..models import MODEL_NAMES
from ..optim import SGD
from ..training.config import SYNTHETIC_DATA_SEED, TrainConfig
from ..training.metrics import append_record, read_records
from ..training.trainer import TrainingInterrupted, make_loss, make_model
from .grid import baseline_line, mean_std, names, seed_bar, study_parser, train_cell

# method -> the training options that make it (on top of the recipe)
METHODS = {"none": {"attention": "none"}, "se": {"attention": "se"}, "cbam": {"attention": "cbam"},
           "bam": {"attention": "bam"}, "focal": {"attention": "none", "loss": "focal"},
           "ba2m": {"attention": "ba2m"}, "ba2m-every": {"attention": "ba2m", "ba2m_placement": "every"}}
MODELS = ("resnet20", "resnet56")
SEEDS = (0, 1, 2)
RECIPE = {"dataset": "cifar100", "epochs": 200, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
          "weight_decay": 5e-4, "schedule": "cosine"}
# --quick: every method on a small synthetic set (10 classes, 12x12), one short epoch, two seeds
QUICK = {"models": ("resnet20",), "methods": tuple(METHODS), "seeds": (0, 1),
         "recipe": {"dataset": "synthetic", "epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9,
                    "weight_decay": 5e-4, "schedule": "cosine"},
         "synthetic": {"n_train": 128, "n_test": 64, "num_classes": 10, "image_size": 12}}
CIFAR100_SIZES = (50_000, 10_000, 32, 100)   # training images, test images, image size, classes
KEY = ("dataset", "epochs", "model", "method", "seed")
CELL_COLUMNS = KEY + ("diverged", "train_loss", "top1", "best_top1", "seconds")


def cell_config(cell: dict, recipe: dict, folder, backend_name: str) -> TrainConfig:
    """The training options of one run: the recipe, then the method's options."""
    cfg = TrainConfig(**{**recipe, "epochs": int(cell["epochs"])}, model=cell["model"], seed=int(cell["seed"]),
                      backend=backend_name, out=str(folder), progress=False)
    for k, v in METHODS[cell["method"]].items():
        setattr(cfg, k, v)
    return cfg


def run_cell(cell: dict, recipe: dict, data, folder: pathlib.Path, backend_name: str) -> dict:
    """Train one run from scratch in ``folder``; its row of ``CELL_COLUMNS`` (top-1 in %)."""
    diverged, _, rows, seconds = train_cell(cell_config(cell, recipe, folder, backend_name), data, folder)
    last = rows[-1] if rows else {}
    top1 = [100 * r["test_top1_population"] for r in rows]
    return {**cell, "diverged": int(diverged), "train_loss": last.get("train_loss", math.nan),
            "top1": math.nan if diverged or not rows else top1[-1], "best_top1": max(top1, default=math.nan),
            "seconds": seconds}


def step_seconds(model: str, method: str, recipe: dict, image_size: int, num_classes: int, repeats: int = 2) -> float:
    """Median seconds of one training step (forward, loss, backward, SGD) of ``model`` with
    ``method`` at the recipe's batch size, on random images, after one warm-up step: the model and
    the loss the trainer builds for such a run (seed 0)."""
    cfg = cell_config({"model": model, "method": method, "seed": 0, "epochs": recipe["epochs"]}, recipe, ".",
                      backend.name)
    net, loss = make_model(cfg, num_classes), make_loss(cfg)
    rng = backend.new_host_rng(0)
    n = recipe["batch_size"]
    x = backend.to_device(rng.standard_normal((n, 3, image_size, image_size)), backend.float32)
    y = backend.to_device(rng.integers(0, num_classes, n))
    opt = SGD(net, lr=0.01, momentum=0.9)
    times = []
    for i in range(repeats + 1):
        backend.synchronize()
        t0 = time.perf_counter()
        loss.forward(net.forward(x), y)
        net.zero_grad(set_to_none=True)
        net.backward(loss.backward())
        opt.step()
        backend.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_seconds(step_s: float, method: str, recipe: dict, n_train: int, n_test: int) -> float:
    """Estimated seconds of one run: the training steps, plus the test passes of every epoch (a
    forward pass taken as a third of a step; BA²M evaluates under three weightings)."""
    steps = n_train // recipe["batch_size"]
    evals = 3 if METHODS[method]["attention"] == "ba2m" else 1
    test_batches = math.ceil(n_test / recipe["batch_size"])
    return recipe["epochs"] * step_s * (steps + evals * test_batches / 3)


def _value(cell, column="top1") -> float:
    v = cell.get(column, "")
    return math.nan if v in ("", None) else float(v)


def _groups(cells):
    """(dataset, epochs, model) -> method -> cells, in the order of METHODS."""
    out = {}
    for c in cells:
        out.setdefault((c["dataset"], str(c["epochs"]), c["model"]), {}).setdefault(c["method"], []).append(c)
    return {k: dict(sorted(v.items(), key=lambda mv: list(METHODS).index(mv[0]))) for k, v in sorted(out.items())}


def summarise(cells: list) -> str:
    """Markdown: per (data set, epochs, model), a row per method: last-epoch test top-1 % mean ± std
    over the seeds, and the difference from ``none`` ± the standard error of that difference,
    sqrt(s_m^2 / n_m + s_none^2 / n_none). A diverged run counts as a missing value, listed."""
    lines = []
    for (dataset, epochs, model), methods in _groups(cells).items():
        lines += [f"**{model} on {dataset}, {epochs} epochs**: last-epoch test top-1 %", "",
                  "| method | seeds | top-1 % (mean ± std) | best-epoch top-1 % | vs none (± s.e.) | diverged |",
                  "|---|---|---|---|---|---|"]
        base = mean_std([_value(c) for c in methods.get("none", [])])
        for method, g in methods.items():
            m, s, n = mean_std([_value(c) for c in g])
            b, bs, _ = mean_std([_value(c, "best_top1") for c in g])
            if method == "none" or math.isnan(base[0]) or not n:
                diff = "—"
            else:
                diff = f"{m - base[0]:+.2f} ± {math.sqrt(s ** 2 / n + base[1] ** 2 / base[2]):.2f}"
            div = sum(int(c["diverged"]) for c in g)
            lines.append(f"| {method} | {len(g)} | " + (f"{m:.2f} ± {s:.2f}" if n else "—")
                         + f" | {b:.2f} ± {bs:.2f} | {diff} | {div} |")
        lines.append("")
    return "\n".join(lines)


def plot_summary(cells: list, path) -> None:
    """One panel per (data set, epochs, model): a dot per seed, a bar at the mean, a dashed line at
    the mean of ``none``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    groups = _groups(cells)
    if not groups:
        return
    fig = Figure(figsize=(5.0 * len(groups), 3.6))
    FigureCanvasAgg(fig)
    for i, ((dataset, epochs, model), methods) in enumerate(groups.items()):
        ax = fig.add_subplot(1, len(groups), i + 1)
        for j, (method, g) in enumerate(methods.items()):
            ys = [v for v in (_value(c) for c in g) if not math.isnan(v)]
            seed_bar(ax, j, ys, "tab:orange" if method.startswith("ba2m") else "tab:blue")
        baseline_line(ax, [v for v in (_value(c) for c in methods.get("none", [])) if not math.isnan(v)],
                      "none (mean)", 7)
        ax.set_xticks(range(len(methods)), list(methods), rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("last-epoch test top-1 %", fontsize=8)
        ax.set_title(f"{model} on {dataset}, {epochs} epochs", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 2 * 86400 else f"{seconds / 86400:.1f} days"


def build_parser() -> argparse.ArgumentParser:
    p = study_parser("paper", __doc__, f"{', '.join(QUICK['models'])} x every method x seeds "
                                       f"{','.join(map(str, QUICK['seeds']))}, 1 epoch on "
                                       f"{QUICK['synthetic']['n_train']} synthetic images (12x12, 10 classes)")
    p.add_argument("--models", type=names, default=MODELS, help="comma-separated, of " + ", ".join(MODEL_NAMES)
                   + " (default: %(default)s)")
    p.add_argument("--methods", type=names, default=tuple(METHODS), help="comma-separated (default: all: %(default)s)")
    p.add_argument("--seeds", type=lambda s: tuple(map(int, names(s))), default=SEEDS,
                   help="comma-separated seeds, at least 2 for a spread (default: 0,1,2)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs of every run (default: {RECIPE['epochs']})")
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                   help="default: cupy where a GPU is usable, else numpy")
    p.add_argument("--data-dir", default=None, help="where CIFAR-100 is (or is downloaded to); the trainer's default")
    p.add_argument("--out", default=None, help="results folder (default: studies/paper, or studies/paper-quick); "
                                               "rerunning with the same folder skips finished runs")
    p.add_argument("--plan-only", action="store_true", help="print the plan and the time estimate, train nothing")
    p.add_argument("--summary-only", action="store_true", help="only rewrite summary.md/png from cells.csv")
    return p


def _check(parser, args) -> None:
    for name, known in (("models", MODEL_NAMES), ("methods", tuple(METHODS))):
        bad = [v for v in getattr(args, name) if v not in known]
        if bad or not getattr(args, name):
            parser.error(f"--{name}: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(known)}")
    if not args.seeds:
        parser.error("--seeds: give at least one seed")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")


def _sizes(args) -> tuple:
    """(training images, test images, image size, classes) of the study's data set."""
    q = QUICK["synthetic"]
    return (q["n_train"], q["n_test"], q["image_size"], q["num_classes"]) if args.quick else CIFAR100_SIZES


def _load(args, recipe):
    if args.quick:
        return make_synthetic(**QUICK["synthetic"], seed=SYNTHETIC_DATA_SEED)
    return load_dataset(recipe["dataset"], data_dir=args.data_dir, progress=True)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.methods, args.seeds = QUICK["models"], QUICK["methods"], QUICK["seeds"]
    _check(parser, args)
    recipe = dict(QUICK["recipe"] if args.quick else RECIPE)
    if args.epochs:
        recipe["epochs"] = args.epochs
    backend_name = args.backend or ("cupy" if backend.cupy_available()[0] else "numpy")
    out = pathlib.Path(args.out or ("studies/paper-quick" if args.quick else "studies/paper"))
    out.mkdir(parents=True, exist_ok=True)
    cells_csv = out / "cells.csv"
    status = 0
    if not args.summary_only:
        try:
            status = _train(args, recipe, backend_name, out, cells_csv)
        except KeyboardInterrupt:        # before the first run (loading the data, timing the steps)
            print(f"\ninterrupted before any run finished; rerun the same command to start", file=sys.stderr)
            status = 130
    cells = read_records(cells_csv)
    if cells:
        (out / "summary.md").write_text(summarise(cells))
        plot_summary(cells, out / "summary.png")
        print(summarise(cells), flush=True)
        print(f"wrote {cells_csv}, {out / 'summary.md'}, {out / 'summary.png'}", flush=True)
    return status


def _train(args, recipe, backend_name, out, cells_csv) -> int:
    done = {tuple(str(c[k]) for k in KEY) for c in read_records(cells_csv)}
    todo, skipped = [], 0
    for model, method, seed in itertools.product(args.models, args.methods, args.seeds):
        cell = {"dataset": recipe["dataset"], "epochs": recipe["epochs"], "model": model, "method": method, "seed": seed}
        if tuple(str(cell[k]) for k in KEY) in done:
            skipped += 1
        else:
            todo.append(cell)
    backend.use_backend(backend_name)
    n_train, n_test, size, classes = _sizes(args)
    print(f"paper study -> {out}: {len(args.models)} models x {len(args.methods)} methods x {len(args.seeds)} seeds "
          f"= {len(todo) + skipped} runs of {recipe['epochs']} epochs on {recipe['dataset']}, {len(todo)} to train "
          f"({skipped} already in {cells_csv.name}); backend {backend_name}"
          + (f" ({backend.device_description()})" if backend.device_description() else ""), flush=True)
    if not todo:
        return 0
    steps = {(m, k): step_seconds(m, k, recipe, size, classes)
             for m, k in sorted({(c["model"], c["method"]) for c in todo})}
    total = sum(run_seconds(steps[(c["model"], c["method"])], c["method"], recipe, n_train, n_test) for c in todo)
    per_step = ", ".join(f"{m}/{k} {1000 * s:.0f} ms" for (m, k), s in steps.items())
    print(f"estimated time: {_duration(total)} (a training step at batch {recipe['batch_size']}, measured here: "
          f"{per_step})", flush=True)
    if args.plan_only:
        return 0
    try:
        data = _load(args, recipe)
    except DatasetError as exc:
        print(f"paper study: {exc}", file=sys.stderr)
        return 1
    for i, cell in enumerate(todo, 1):
        folder = out / "runs" / "_".join(str(cell[k]) for k in KEY)
        if folder.exists():              # a run interrupted half-way starts again
            shutil.rmtree(folder)
        try:
            row = run_cell(cell, recipe, data, folder, backend_name)
        except (KeyboardInterrupt, TrainingInterrupted) as exc:
            print(f"\ninterrupted during run {i} of {len(todo)} ({cell['model']} {cell['method']} seed {cell['seed']}); "
                  f"the {skipped + i - 1} finished runs are in {cells_csv}. Rerun the same command to resume.",
                  file=sys.stderr, flush=True)
            return getattr(exc, "exit_status", 130)
        append_record(cells_csv, CELL_COLUMNS, row)
        result = "diverged" if row["diverged"] else f"{row['top1']:.2f}%"
        print(f"[{i}/{len(todo)}] {cell['model']} {cell['method']} seed {cell['seed']}: last-epoch top-1 {result} "
              f"({row['seconds']:.0f} s)", flush=True)
    return 0
