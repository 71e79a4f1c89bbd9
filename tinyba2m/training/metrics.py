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

Rows are appended and flushed per epoch; when a run resumes, :func:`log_problem` checks that the
file holds the checkpoint's epochs 1..k, well formed, and :func:`truncate_after` drops the rows
beyond them, so a resumed run's file equals an uninterrupted one's (apart from the timing
columns). The checkpoint keeps the rows too (its ``history``): :func:`write_rows` rebuilds a lost or
damaged file from them.
"""
from __future__ import annotations

import csv
import io
import os
import pathlib

from .. import backend
from .checkpoint import atomic_write_text, write_error

from ..attention.ba2m import EVAL_WEIGHTINGS

TIMING_COLUMNS = ("seconds", "images_per_s")   # the columns that differ between two runs of one config
METRIC_COLUMNS = (("epoch", "lr", "train_loss", "train_acc")
                  + tuple(f"test_{k}_{mode}" for mode in EVAL_WEIGHTINGS for k in ("loss", "top1", "top5"))
                  + ("max_weight",) + TIMING_COLUMNS)
WEIGHT_COLUMNS = ("epoch", "count", "mean", "std", "min", "p05", "p25", "median", "p75", "p95", "max")


def _fmt(v) -> str:
    return str(v) if isinstance(v, int) else f"{float(v):.8g}"


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
    """Append one CSV row to ``path`` (created if missing), flushed to disk; an ``OSError`` is a
    :class:`.checkpoint.WriteError` naming ``path``."""
    try:
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow(values)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise write_error(exc, path) from exc


def _csv_text(rows) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def write_rows(path, columns, rows) -> None:
    """Write ``path`` anew (atomically): the header ``columns``, then ``rows`` (dicts) as
    :class:`CsvLog` appends them — the same text, so a rebuilt file equals the lost one."""
    atomic_write_text(path, _csv_text([list(columns)] + [[_fmt(r[c]) for c in columns] for r in rows]))


def log_problem(path, columns, epochs: int) -> str | None:
    """What is wrong with the log at ``path`` for a checkpoint after ``epochs`` epochs, or None: the
    header must be ``columns`` and the first ``epochs`` rows epochs 1..``epochs``, each complete and
    numeric (later rows, even a torn last line, belong to epochs being redone and are dropped)."""
    rows = read_rows(path, raw=True)
    if not rows:
        return "it is empty" if epochs else None
    if tuple(rows[0]) != tuple(columns):
        head = ",".join(rows[0])[:60]
        return f"its header is {head!r}, not the {len(columns)} columns {columns[0]},...,{columns[-1]}"
    body = rows[1:]
    if len(body) < epochs:
        return f"it holds {len(body)} rows, but the checkpoint is at epoch {epochs}"
    for line, (want, row) in enumerate(zip(range(1, epochs + 1), body), start=2):
        if len(row) != len(columns):
            return f"line {line} has {len(row)} fields, not {len(columns)}"
        try:
            values = [float(v) for v in row]
        except ValueError as exc:
            return f"line {line}: {exc}"
        if values[0] != want:
            return f"line {line} is epoch {row[0]}, expected epoch {want}"
    return None


def append_record(path, columns, record: dict) -> None:
    """Append ``record`` as one row of ``columns`` (missing keys empty), with the header first when
    ``path`` is new: the resumable tables of the studies (``cells.csv``)."""
    if not pathlib.Path(path).exists():
        append_row(path, columns)
    append_row(path, [record.get(k, "") for k in columns])


def read_records(path) -> list:
    """The rows of a CSV file with a header, as dicts of strings; ``[]`` when it does not exist."""
    if not pathlib.Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
    """Keep the header and the first ``epoch`` rows (epochs 1..``epoch``, as :func:`log_problem`
    checks), rewritten atomically; returns how many rows were dropped."""
    path = pathlib.Path(path)
    if not path.exists():
        return 0
    rows = read_rows(path, raw=True)
    keep = rows[:1 + epoch]
    dropped = len(rows) - len(keep)
    if dropped:
        atomic_write_text(path, _csv_text(keep))
    return dropped


def weight_statistics(epoch: int, weights) -> dict:
    """Summary of one epoch's per-sample BA²M weights (a 1-D host array of finite values)."""
    np = backend.numpy_module  # host-side statistics of a host array
    w = backend.to_host(weights).astype(np.float64)
    values = (w.mean(), w.std(), w.min(), *np.percentile(w, [5, 25, 50, 75, 95]), w.max())
    return {"epoch": int(epoch), "count": int(w.size), **{k: float(v) for k, v in zip(WEIGHT_COLUMNS[2:], values)}}
