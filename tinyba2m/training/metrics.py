"""The per-epoch ``metrics.csv`` of a run (and the BA²M weight statistics ``ba2m_weights.csv``).

Columns of ``metrics.csv`` (one row per completed epoch):

    epoch, lr (at the epoch's first step), train_loss (the training objective, mean over the
    epoch's batches), train_acc (top-1 on the augmented training batches, train mode),
    test_loss_population, test_top1_population, test_top5_population  (BA²M eval weighting "population",
                                                                        the default)
    test_loss_batch, test_top1_batch, test_top5_batch                 (eval weighting "batch")
    test_loss_uniform, test_top1_uniform, test_top5_uniform           (eval weighting "uniform")
    max_weight (the largest BA²M weight any training sample got in the epoch, in any module,
    relative to its batch's mean weight — the weight itself for the default softmax, whose mean
    is 1; 1 without BA²M), seconds (whole epoch incl. evaluation), images_per_s (training throughput)

Test losses are plain cross-entropy whatever the training loss, so runs with CE, label smoothing
and focal loss compare on one scale. Accuracies are fractions in [0, 1]. Without BA²M the three
weightings are the same model, evaluated once and written three times.

Rows are appended and flushed per epoch; :func:`truncate_after` drops rows beyond a checkpoint's
epoch when a run resumes, so a resumed run's file equals an uninterrupted one's (apart from the
timing columns).
"""
from __future__ import annotations

import csv
import os
import pathlib

from .. import backend

from ..attention.ba2m import EVAL_WEIGHTINGS

TIMING_COLUMNS = ("seconds", "images_per_s")   # the columns that differ between two runs of one config
METRIC_COLUMNS = (("epoch", "lr", "train_loss", "train_acc")
                  + tuple(f"test_{k}_{mode}" for mode in EVAL_WEIGHTINGS for k in ("loss", "top1", "top5"))
                  + ("max_weight",) + TIMING_COLUMNS)
WEIGHT_COLUMNS = ("epoch", "count", "mean", "std", "min", "p05", "p25", "median", "p75", "p95", "max")


def _fmt(v) -> str:
    if isinstance(v, int):
        return str(v)
    return f"{float(v):.8g}"


class CsvLog:
    """Append-only CSV with a fixed header (written when the file is new or empty)."""

    def __init__(self, path, columns=METRIC_COLUMNS):
        self.path = pathlib.Path(path)
        self.columns = tuple(columns)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_row(self.path, self.columns)
        else:
            header = read_rows(self.path, raw=True)[0]
            if tuple(header) != self.columns:
                raise ValueError(f"{self.path}: unexpected header {header}, expected {list(self.columns)}")

    def append(self, row: dict) -> None:
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise ValueError(f"{self.path.name}: row lacks columns {missing}")
        append_row(self.path, [_fmt(row[c]) for c in self.columns])


def append_row(path, values) -> None:
    """Append one CSV row to ``path`` (created if missing), flushed to disk."""
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow(values)
        f.flush()
        os.fsync(f.fileno())


def read_rows(path, raw: bool = False):
    """Rows as dicts of floats (``epoch`` as int); ``raw=True``: lists of strings incl. header."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if raw:
        return rows
    if not rows:
        return []
    header, *body = rows
    floats = [{k: float(v) for k, v in zip(header, r)} for r in body]
    return [{**d, "epoch": int(d["epoch"])} for d in floats]


def truncate_after(path, epoch: int) -> int:
    """Keep the header and the rows with ``epoch <= epoch``; returns how many rows were dropped."""
    path = pathlib.Path(path)
    if not path.exists():
        return 0
    rows = read_rows(path, raw=True)
    if not rows:
        return 0
    keep = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= epoch]
    dropped = len(rows) - len(keep)
    if dropped:
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(keep)
    return dropped


def weight_statistics(epoch: int, weights) -> dict:
    """Summary of one epoch's per-sample BA²M weights (a 1-D host array of finite values)."""
    np = backend.numpy_module  # host-side statistics of a host array
    w = backend.to_host(weights).astype(np.float64)
    values = (w.mean(), w.std(), w.min(), *np.percentile(w, [5, 25, 50, 75, 95]), w.max())
    return {"epoch": int(epoch), "count": int(w.size), **{k: float(v) for k, v in zip(WEIGHT_COLUMNS[2:], values)}}
