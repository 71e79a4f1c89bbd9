"""A whole training run: build, (resume,) train epoch by epoch, evaluate, log, checkpoint, plot.

Run folder (``config.out``):

- ``config.json``          every option (null for those that do not apply: ``inactive_options``), package
                           version, backend, data sizes, parameter count
- ``metrics.csv``          one row per epoch (columns: :data:`.metrics.METRIC_COLUMNS`)
- ``checkpoint.npz``       the latest completed epoch (epoch 0 = the initial weights), atomic
- ``best.npz``             the epoch with the best test top-1 under the default eval weighting ``population``
                           (selection on the test split, as is customary for CIFAR; it is the only
                           held-out split)
- ``curves.png``           loss and accuracy curves (all plots are redrawn after an epoch once a
                           minute has passed since the last drawing, and after the last epoch)
- BA²M only: ``ba2m_weights.csv`` (per-epoch statistics of the per-sample weights),
  ``weights.png`` (their distribution per epoch) and ``weighted_samples.png`` (the training images
  with the highest and lowest weights of the last epoch).

Exact resume: the data order and augmentation of epoch ``e`` come from a generator seeded with
``[seed, e]``, the learning rate is a function of the global step, and the checkpoint holds the
model (parameters and BN running statistics), the SGD momentum buffers, the epoch and step
counters, the best metric and the backend's host RNG state. Resuming therefore reproduces the
rows an uninterrupted run writes (timing columns aside).

Extending a run: resuming with a larger ``config.epochs`` than the checkpoint's (``--resume
--epochs N``) trains the extra epochs of a finished or interrupted run. The schedule is a
function of the global step and the run's total steps (``steps_per_epoch * epochs``), so the
epochs already trained keep the rates they had and every remaining step gets the rate an
``N``-epoch run has at that step (cosine and step decay therefore jump back up to where an
``N``-epoch run would be; the warm-up is not repeated). ``config.json`` and the checkpoint are
rewritten at once with the new ``epochs`` (``config.json`` lists the earlier values under
``epochs_extended_from``); ``metrics.csv`` continues.

Faults: Ctrl-C writes the checkpoint of the last *completed* epoch (work of the interrupted epoch
is discarded; no mid-epoch checkpoints) and raises :class:`TrainingInterrupted` with the command
that resumes. A non-finite loss raises :class:`.loop.NonFiniteLossError` naming the epoch and step
(a run-away, :class:`.loop.RunAwayError`, is one); the last good checkpoint is left as it was.
Either way the plots are drawn from the completed epochs before the exception leaves. A start or
resume removes the temporary files of atomic writes a killed process left behind
(``.checkpoint.npz.XXXXXXXX.tmp`` and the like). A fresh run whose folder cannot be set up
(config.json and the epoch-0 checkpoint) removes what it made.
"""
from __future__ import annotations

import json
import pathlib
import sys
import time

from .. import __version__, backend
from ..data import LAST_BATCH_POLICY, load_dataset
from ..models import ba2m_modules, build_model
from ..nn import SoftmaxCrossEntropy
from ..nn.focal import FocalLoss
from ..optim import SGD, learning_rate
from . import plots
from .checkpoint import atomic_write_text, check_architecture, load_checkpoint, load_model_state, save_checkpoint
from .config import SYNTHETIC_DATA_SEED, TrainConfig
from .folders import missing_folders, remove_empty_folders, remove_stale_temp_files
from ..attention import BA2MOptions
from ..attention.ba2m import EVAL_WEIGHTINGS
from .loop import NonFiniteLossError, RunAwayGuard, evaluate_all, train_epoch
from .metrics import METRIC_COLUMNS, WEIGHT_COLUMNS, CsvLog, read_rows, truncate_after, weight_statistics

CHECKPOINT, BEST, CONFIG, METRICS, WEIGHTS_CSV = "checkpoint.npz", "best.npz", "config.json", "metrics.csv", "ba2m_weights.csv"
GRID_PER_ROW = 8
PLOT_INTERVAL_S = 60.0  # plots are redrawn after an epoch when this long has passed, and after the last one


class TrainingInterrupted(Exception):
    """Ctrl-C: the checkpoint of the last completed epoch was written; the message says how to resume."""


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (an existing run without --resume, nothing to resume)."""


def load_data(config: TrainConfig):
    return load_dataset(config.dataset, data_dir=config.data_dir, url=config.data_url, subset=config.subset,
                        seed=SYNTHETIC_DATA_SEED, progress=config.progress)


LOSSES = ("ce", "focal")


def make_loss(config: TrainConfig):
    """The loss of ``config.loss`` (one of ``LOSSES``)."""
    if config.loss == "focal":
        return FocalLoss(config.focal_gamma, config.label_smoothing)
    if config.loss == "ce":
        return SoftmaxCrossEntropy(config.label_smoothing)
    raise ValueError(f"unknown loss {config.loss!r}: expected one of {', '.join(map(repr, LOSSES))}")


def make_model(config: TrainConfig, num_classes: int):
    """The model of ``config``, its weights drawn from the host generator seeded with ``config.seed``."""
    backend.seed(config.seed)
    return build_model(config.model, config.attention, num_classes=num_classes, ba2m_placement=config.ba2m_placement,
                       zero_init_residual=config.zero_init_residual, init=config.init,
                       ba2m=BA2MOptions(**config.ba2m_options()))


def _test_columns(model, data, config: TrainConfig, epoch: int) -> dict:
    """The test columns of metrics.csv (``test_<loss|top1|top5>_<eval weighting>``) of ``model`` on
    the test split of ``data``, at ``config``'s eval batch size."""
    ev = evaluate_all(model, data.test_images, data.test_labels, config.effective_eval_batch_size,
                      bool(ba2m_modules(model)), epoch=epoch)
    return {f"test_{k}_{mode}": v for mode in ev for k, v in ev[mode].items()}


class Trainer:
    """Holds one run; :meth:`run` trains from scratch or resumes (``resume=True``)."""

    def __init__(self, config: TrainConfig, data=None, log=None, on_epoch_end=None):
        self.config = config
        self.log = log or (lambda msg: print(msg, flush=True))
        self.on_epoch_end = on_epoch_end  # test hook: called as on_epoch_end(epoch) after each epoch
        self.out = pathlib.Path(config.out)
        backend.use_backend(config.backend)
        self.data = data if data is not None else load_data(config)
        self.n_train, self.n_test = int(self.data.train_images.shape[0]), int(self.data.test_images.shape[0])
        self.num_classes = self.data.num_classes
        if self.n_train < config.batch_size:
            raise RunFolderError(f"--batch-size {config.batch_size} is larger than the {self.n_train} training images; "
                                 f"{LAST_BATCH_POLICY.split(' (')[0]}, so no batch would remain")
        self.steps_per_epoch = self.n_train // config.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup_steps = int(round(config.warmup_epochs * self.steps_per_epoch))
        self.model = make_model(config, self.num_classes)
        self.has_ba2m = bool(ba2m_modules(self.model))
        self.loss_fn = make_loss(config)
        self.optimizer = SGD(self.model, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                             weight_decay=config.weight_decay)
        self.epoch, self.global_step, self.best_top1, self.best_epoch = 0, 0, -1.0, 0
        self._last_good = None  # (model state, optimiser arrays, meta) of the last completed epoch
        self._last_weights = None  # BA²M weights of the last completed epoch (for the plots)
        self._last_plot = time.perf_counter()  # time of the last plot refresh (or of the start)

    # -- state -----------------------------------------------------------------------------------
    def _snapshot(self):
        optim = self.optimizer.state_dict()
        return self.model.state_dict(), optim["arrays"], {
            **self.config.architecture(self.num_classes), "epoch": self.epoch, "global_step": self.global_step,
            "best_top1": self.best_top1, "best_epoch": self.best_epoch, "config": self.config.to_dict(),
            "host_rng_state": backend.get_rng_state(), "optimizer": optim["hparams"], "backend": backend.name,
            "dataset_sizes": [self.n_train, self.n_test]}

    def _restore(self, path) -> int:
        """Load the checkpoint at ``path`` into this run; returns the epochs of the run that wrote it."""
        meta, model_state, optim_arrays = load_checkpoint(path)
        check_architecture(meta, self.config.architecture(self.num_classes), path)
        load_model_state(self.model, model_state, path)
        self.optimizer.load_state_dict({"arrays": optim_arrays, "hparams": meta["optimizer"]})
        backend.set_rng_state(meta["host_rng_state"])
        self.epoch, self.global_step = int(meta["epoch"]), int(meta["global_step"])
        self.best_top1, self.best_epoch = float(meta["best_top1"]), int(meta["best_epoch"])
        return int(meta.get("config", {}).get("epochs", self.config.epochs))

    def _write_config(self, extended_from=()) -> None:
        inactive = sorted(self.config.inactive_options())  # recorded as null: they do not apply
        info = {**self.config.to_dict(), **dict.fromkeys(inactive), "inactive_options": inactive,
                "package_version": __version__, "backend": backend.name,
                "num_parameters": self.model.num_parameters(), "n_train": self.n_train, "n_test": self.n_test,
                "num_classes": self.num_classes, "steps_per_epoch": self.steps_per_epoch,
                "last_batch_policy": LAST_BATCH_POLICY, "command": " ".join(sys.argv)}
        if extended_from:
            info["epochs_extended_from"] = list(extended_from)
        atomic_write_text(self.out / CONFIG, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def _previous_extensions(self) -> list:
        try:
            return list(json.loads((self.out / CONFIG).read_text()).get("epochs_extended_from", []))
        except (OSError, ValueError, AttributeError):
            return []

    def _start_fresh(self) -> None:
        """config.json and the epoch-0 checkpoint; on failure, remove what was made here."""
        if (self.out / CHECKPOINT).exists() or (self.out / METRICS).exists():
            raise RunFolderError(f"{self.out} already holds a run ({CHECKPOINT} / {METRICS}); pass --resume to "
                                 f"continue it, or choose another --out")
        self._remove_stale_temp_files()
        made = missing_folders(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self._write_config()
            save_checkpoint(self.out / CHECKPOINT, *self._snapshot())  # epoch 0: the initial weights
        except BaseException:
            for name in (CONFIG, CHECKPOINT):
                (self.out / name).unlink(missing_ok=True)
            remove_empty_folders(made)
            raise

    def _resume(self) -> None:
        cfg = self.config
        if not (self.out / CHECKPOINT).is_file():
            raise RunFolderError(f"nothing to resume: no {CHECKPOINT} in {self.out}")
        self._remove_stale_temp_files()
        saved_epochs = self._restore(self.out / CHECKPOINT)
        if cfg.epochs < saved_epochs:
            raise RunFolderError(f"{self.out} is a run of {saved_epochs} epochs; --epochs can only grow on "
                                 f"--resume, got {cfg.epochs}")
        truncate_after(self.out / METRICS, self.epoch)
        truncate_after(self.out / WEIGHTS_CSV, self.epoch)
        if cfg.epochs > saved_epochs:
            self._write_config(self._previous_extensions() + [saved_epochs])
            save_checkpoint(self.out / CHECKPOINT, *self._snapshot())  # the extension sticks, even after a kill
            lr = learning_rate(self.global_step, self.total_steps, cfg.lr, cfg.schedule, self.warmup_steps)
            self.log(f"extending {self.out} from {saved_epochs} to {cfg.epochs} epochs: the remaining steps "
                     f"follow the {cfg.epochs}-epoch {cfg.schedule} schedule (lr at global step {self.global_step}: "
                     f"{lr:.4g})")
        elif not (self.out / CONFIG).exists():
            self._write_config()
        if self.epoch >= cfg.epochs:
            self.log(f"{self.out} has already trained all {cfg.epochs} epochs; nothing to do (to train more: "
                     f"--resume --out {self.out} --epochs N with N > {cfg.epochs})")
        else:
            self.log(f"resuming {self.out} after epoch {self.epoch}/{cfg.epochs} (global step {self.global_step})")

    def _remove_stale_temp_files(self) -> None:
        stale = remove_stale_temp_files(self.out)
        if stale:
            self.log(f"removed {len(stale)} temporary file(s) left by an interrupted write: "
                     f"{', '.join(p.name for p in stale)}")

    # -- the run ---------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        cfg = self.config
        if resume:
            self._resume()
        else:
            self._start_fresh()
        self._last_good = self._snapshot()  # what Ctrl-C writes back: the last completed epoch
        metrics = CsvLog(self.out / METRICS, METRIC_COLUMNS)
        wlog = CsvLog(self.out / WEIGHTS_CSV, WEIGHT_COLUMNS) if self.has_ba2m else None
        self._announce()
        try:
            while self.epoch < cfg.epochs:
                self._one_epoch(metrics, wlog)
        except NonFiniteLossError:
            self._plots_on_stop()
            raise
        except KeyboardInterrupt:
            save_checkpoint(self.out / CHECKPOINT, *self._last_good)
            self._plots_on_stop()
            done = self._last_good[2]["epoch"]
            raise TrainingInterrupted(
                f"interrupted during epoch {done + 1}; saved the checkpoint of the last completed epoch ({done}) to "
                f"{self.out / CHECKPOINT} (the interrupted epoch is redone on resume). Continue with:\n"
                f"  python train_cifar.py --resume --out {self.out}") from None
        rows = read_rows(self.out / METRICS)
        return {"out": str(self.out), "epochs": self.epoch, "best_top1": self.best_top1, "best_epoch": self.best_epoch,
                "last": rows[-1] if rows else None}

    def _announce(self) -> None:
        """The run's header line, then a note where the data set is smaller than ``--subset`` asked (the
        real counts are in config.json)."""
        c, n = self.config, self.config.subset
        att = c.attention + (f" ({c.ba2m_placement})" if c.attention != "none" else "")
        self.log(f"tinyba2m {__version__} | backend {backend.name} | {c.model} + {att}, "
                 f"{self.model.num_parameters():,} parameters | {self.data.name}: {self.n_train} train / "
                 f"{self.n_test} test images, {self.num_classes} classes | {self.steps_per_epoch} steps/epoch of "
                 f"{c.batch_size} (last partial batch dropped) | loss {c.loss} | out {self.out}")
        short = [f"{have} {split}" for split, have in (("training", self.n_train), ("test", self.n_test))
                 if n is not None and have < n]
        if short:
            self.log(f"note: --subset {n} is more than {self.data.name} has; using all {' and '.join(short)} images "
                     f"(config.json: n_train {self.n_train}, n_test {self.n_test})")

    def _one_epoch(self, metrics: CsvLog, wlog) -> None:
        cfg, e = self.config, self.epoch + 1
        t0 = time.perf_counter()
        rng = backend.new_host_rng([cfg.seed, e])
        st = train_epoch(self.model, self.loss_fn, self.optimizer, self.data.train_images, self.data.train_labels,
                         epoch=e, epochs=cfg.epochs, batch_size=cfg.batch_size, rng=rng, global_step=self.global_step,
                         total_steps=self.total_steps, base_lr=cfg.lr, schedule=cfg.schedule,
                         warmup_steps=self.warmup_steps, progress=cfg.progress, track_weights=self.has_ba2m,
                         augment=self.data.augment, guard=RunAwayGuard(self.num_classes))
        test = _test_columns(self.model, self.data, cfg, e)
        row = {"epoch": e, "lr": st["lr"], "train_loss": st["train_loss"], "train_acc": st["train_acc"], **test,
               "max_weight": st["max_weight"], "seconds": time.perf_counter() - t0,
               "images_per_s": st["images"] / max(st["train_seconds"], 1e-9)}
        self.epoch, self.global_step = e, st["global_step"]
        top1 = test[f"test_top1_{EVAL_WEIGHTINGS[0]}"]  # the best is chosen on the default eval weighting
        improved = top1 > self.best_top1
        if improved:
            self.best_top1, self.best_epoch = top1, e
        metrics.append(row)
        weights = self._last_weights = st["weights"]
        if wlog is not None:
            seen = weights[weights == weights]  # drop the NaN of images in the dropped partial batch
            wlog.append(weight_statistics(e, seen))
        snap = self._snapshot()
        if improved:
            save_checkpoint(self.out / BEST, *snap)  # best first: a crash in between redoes this epoch
        save_checkpoint(self.out / CHECKPOINT, *snap)
        self._last_good = snap
        if e == cfg.epochs or time.perf_counter() - self._last_plot >= PLOT_INTERVAL_S:
            self._plots(weights)
            self._last_plot = time.perf_counter()
        self.log(self._summary(row, improved))
        if self.on_epoch_end is not None:
            self.on_epoch_end(e)

    def _summary(self, r: dict, improved: bool) -> str:
        d = EVAL_WEIGHTINGS[0]
        others = (" (" + ", ".join(f"{m} {100 * r[f'test_top1_{m}']:.2f}%" for m in EVAL_WEIGHTINGS[1:])
                  + f"; max weight {r['max_weight']:.3g})") if self.has_ba2m else ""
        return (f"epoch {r['epoch']:>3}/{self.config.epochs}  lr {r['lr']:.4g}  train loss {r['train_loss']:.4f} "
                f"acc {100 * r['train_acc']:.2f}%  |  test loss {r[f'test_loss_{d}']:.4f} top-1 "
                f"{100 * r[f'test_top1_{d}']:.2f}%{others} top-5 {100 * r[f'test_top5_{d}']:.2f}%  |  "
                f"{r['seconds']:.1f} s, {r['images_per_s']:.0f} img/s{'  *best' if improved else ''}")

    def _plots_on_stop(self) -> None:
        """The plots of the completed epochs, when a run stops early (Ctrl-C, divergence); a
        failure here is reported, never hiding why the run stopped."""
        try:
            if read_rows(self.out / METRICS):
                self._plots(self._last_weights)
        except KeyboardInterrupt:  # a second Ctrl-C: stop drawing, the checkpoint is saved already
            self.log("plots not drawn (interrupted)")
        except Exception as exc:  # noqa: BLE001 - the stop's own message matters more
            self.log(f"warning: could not draw the plots: {type(exc).__name__}: {exc}")

    def _plots(self, weights) -> None:
        cfg = self.config
        title = f"{cfg.model} + {cfg.attention} on {self.data.name} (seed {cfg.seed})"
        plots.plot_curves(read_rows(self.out / METRICS), self.out / "curves.png", title)
        if not self.has_ba2m:
            return
        plots.plot_weight_distribution(read_rows(self.out / WEIGHTS_CSV), self.out / "weights.png")
        if weights is None:  # no epoch completed in this process: the sample grid needs its weights
            return
        np = backend.numpy_module  # host-side ranking of a host array
        seen = np.flatnonzero(weights == weights)
        order = seen[np.argsort(-weights[seen], kind="stable")]
        k = min(GRID_PER_ROW, len(order) // 2)
        chosen = np.concatenate([order[:k], order[::-1][:k]])
        plots.plot_weighted_samples(self.data.train_images[chosen], self.data.train_labels[chosen], weights[chosen],
                                    self.data.fine_names, self.out / "weighted_samples.png",
                                    f"epoch {self.epoch}: training images with the highest (top) and lowest (bottom) "
                                    f"BA²M weight (un-augmented originals)")


def evaluate_checkpoint(path, config: TrainConfig | None = None, data=None) -> dict:
    """Evaluate the model stored at ``path`` on the test split under both eval weightings.

    ``config`` (default: the checkpoint's own) gives the data set, the eval batch size and the
    architecture the caller expects; a different architecture raises
    :class:`.checkpoint.ArchitectureMismatchError` naming both."""
    meta, model_state, _ = load_checkpoint(path)
    cfg = config or TrainConfig.from_dict(meta["config"])
    backend.use_backend(cfg.backend)
    check_architecture(meta, cfg.architecture(meta.get("num_classes")), path)  # before loading any data
    data = data if data is not None else load_data(cfg)
    check_architecture(meta, cfg.architecture(data.num_classes), path)
    model = make_model(cfg, data.num_classes)
    load_model_state(model, model_state, path)
    epoch = int(meta.get("epoch", 0))
    return {"checkpoint": str(path), "epoch": epoch, "dataset": data.name, "n_test": int(data.test_images.shape[0]),
            **_test_columns(model, data, cfg, epoch)}
