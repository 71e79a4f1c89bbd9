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

Faults: Ctrl-C (and SIGTERM, which ``train_cifar.py`` turns into :class:`Terminated`) writes the
checkpoint of the last *completed* epoch (work of the interrupted epoch is discarded; no mid-epoch
checkpoints) and raises :class:`TrainingInterrupted` with the command that resumes. A non-finite
loss raises :class:`.loop.NonFiniteLossError` naming the epoch and step (a run-away,
:class:`.loop.RunAwayError`, is one); the last good checkpoint is left as it was. Either way the
plots are drawn from the completed epochs before the exception leaves. A start or resume removes the
temporary files of atomic writes a killed process left behind
(``.checkpoint.npz.<pid>.XXXXXXXX.tmp`` and the like). A fresh run whose folder cannot be set up
(config.json and the epoch-0 checkpoint) removes what it made. A file that cannot be written (a full
disk, a file-size limit) stops the run with :class:`RunSaveError`, one line naming the file; the
last good checkpoint stays as it was.

The run holds the folder's lock (:func:`.folders.run_folder_lock`, ``run.lock``) from start to end:
a second run on the same folder is refused, naming the holder.

What a resume checks first (the checkpoint against ``config.json``, ``best.npz``, the logs): see
:mod:`.resume_checks`; a damaged ``best.npz`` is re-saved at once where the checkpoint holds the
same epoch, else written again after the next epoch.
"""
from __future__ import annotations

import errno
import json
import pathlib
import sys
import time

from .. import __version__, backend
from ..data import LAST_BATCH_POLICY, load_dataset
from ..models import PLACED, ba2m_modules, build_model
from ..nn import SoftmaxCrossEntropy
from ..nn.focal import FocalLoss
from ..optim import SGD, learning_rate
from . import plots
from .checkpoint import WriteError, atomic_write_text, check_architecture, load_checkpoint, load_model_state, save_checkpoint
from .config import SYNTHETIC_DATA_SEED, TrainConfig
from .folders import RunFolderError, missing_folders, remove_empty_folders, remove_stale_temp_files, run_folder_lock
from .resume_checks import best_problem, check_fits_config_json, check_logs
from ..attention.ba2m import EVAL_WEIGHTINGS
from .loop import NonFiniteLossError, RunAwayGuard, evaluate_all, train_epoch
from .metrics import METRIC_COLUMNS, WEIGHT_COLUMNS, CsvLog, log_problem, read_rows, weight_statistics

CHECKPOINT, BEST, CONFIG, METRICS, WEIGHTS_CSV = "checkpoint.npz", "best.npz", "config.json", "metrics.csv", "ba2m_weights.csv"
GRID_PER_ROW = 8
PLOT_INTERVAL_S = 60.0  # plots are redrawn after an epoch when this long has passed, and after the last one


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: the checkpoint of the last completed epoch was written; the message says how
    to resume; ``exit_status`` is 130 (Ctrl-C) or 143 (SIGTERM)."""

    def __init__(self, message: str, exit_status: int = 130):
        super().__init__(message)
        self.exit_status = exit_status


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler, a container stop), raised by train_cifar.py's handler: a
    run treats it as Ctrl-C."""

    exit_status = 143


class RunSaveError(RuntimeError):
    """A run file could not be written (ENOSPC, EFBIG, ...); the message names it and what was kept."""


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
    return build_model(config.model, config.attention, num_classes=num_classes,
                       zero_init_residual=config.zero_init_residual, init=config.init, ba2m=config.ba2m_options())


def _test_columns(model, data, config: TrainConfig, epoch: int) -> dict:
    """The test columns of metrics.csv (``test_<loss|top1|top5>_<eval weighting>``) of ``model`` on
    the test split of ``data``, at ``config``'s eval batch size (its training batch size if unset)."""
    batch_size = config.eval_batch_size or config.batch_size
    ev = evaluate_all(model, data.test_images, data.test_labels, batch_size, epoch=epoch)
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
        self.history = {"metrics": [], "ba2m_weights": []}  # the rows of every completed epoch (in checkpoints)
        self._saved_epoch = None  # the epoch checkpoint.npz holds, once this run knows it is good
        self._last_good = None  # (model state, optimiser arrays, meta) of the last completed epoch
        self._last_weights = None  # BA²M weights of the last completed epoch (for the plots)
        self._last_plot = time.perf_counter()  # time of the last plot refresh (or of the start)

    def lr_at(self, step: int) -> float:
        """The learning rate of global step ``step``: the schedule over this run's total steps."""
        return learning_rate(step, self.total_steps, self.config.lr, self.config.schedule, self.warmup_steps)

    # -- state -----------------------------------------------------------------------------------
    def _snapshot(self):
        optim = self.optimizer.state_dict()
        return self.model.state_dict(), optim["arrays"], {
            **self.config.architecture(self.num_classes), "epoch": self.epoch, "global_step": self.global_step,
            "best_top1": self.best_top1, "best_epoch": self.best_epoch, "config": self.config.to_dict(),
            "host_rng_state": backend.get_rng_state(), "optimizer": optim["hparams"], "backend": backend.name,
            "dataset_sizes": [self.n_train, self.n_test],
            "history": {k: list(rows) for k, rows in self.history.items()}}

    def _save(self, snap) -> None:
        save_checkpoint(self.out / CHECKPOINT, *snap)
        self._saved_epoch = snap[2]["epoch"]

    def _restore(self, path, meta, model_state, optim_arrays) -> None:
        """Load the checkpoint read from ``path`` into this run."""
        check_architecture(meta, self.config.architecture(self.num_classes), path)
        load_model_state(self.model, model_state, path)
        self.optimizer.load_state_dict({"arrays": optim_arrays, "hparams": meta["optimizer"]})
        backend.set_rng_state(meta["host_rng_state"])
        self.epoch, self.global_step = int(meta["epoch"]), int(meta["global_step"])
        self.best_top1, self.best_epoch = float(meta["best_top1"]), int(meta["best_epoch"])
        history = meta.get("history")  # None: written before checkpoints kept it
        self.history = {k: list(history[k][:self.epoch]) for k in self.history} if history else None
        self._saved_epoch = self.epoch

    def _repair_best(self, problem: str) -> None:
        """best.npz is damaged, missing or another epoch: re-save it from the checkpoint when that holds
        the best epoch; else write it again after the next epoch (the best one's weights are lost)."""
        path = self.out / BEST
        if self.best_epoch == self.epoch:
            save_checkpoint(path, *self._snapshot())
            self.log(f"warning: {problem}; re-saved {path} from {CHECKPOINT}, which holds the same epoch "
                     f"({self.epoch})")
            return
        lost = f"the weights of the best epoch {self.best_epoch} (top-1 {100 * self.best_top1:.2f}%) are lost"
        if self.epoch >= self.config.epochs:
            self.log(f"warning: {problem}; {lost}. The run is finished: use {self.out / CHECKPOINT} (epoch "
                     f"{self.epoch}), or extend the run (--epochs N) to write {BEST} again")
        else:
            self.log(f"warning: {problem}; {lost}. {BEST} is written again after the next epoch, then at every "
                     f"improvement")
        self.best_top1, self.best_epoch = -1.0, 0

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
            self._save(self._snapshot())  # epoch 0: the initial weights
        except BaseException:
            for name in (CONFIG, CHECKPOINT):
                (self.out / name).unlink(missing_ok=True)
            remove_empty_folders(made)
            raise

    def _resume(self, rebuild_logs: bool = False, checkpoint=None) -> None:
        cfg = self.config
        path = self.out / CHECKPOINT
        if checkpoint is None and not path.is_file():
            raise RunFolderError(f"nothing to resume: no {CHECKPOINT} in {self.out}")
        self._remove_stale_temp_files()
        meta, model_state, optim_arrays = checkpoint if checkpoint is not None else load_checkpoint(path)
        saved_epochs = int(meta.get("config", {}).get("epochs", cfg.epochs))
        if cfg.epochs < saved_epochs:  # the one place this is checked (the command line relies on it)
            raise RunFolderError(f"--resume: --epochs can only grow: {self.out} is a run of {saved_epochs} epochs "
                                 f"({meta.get('epoch')} done), got --epochs {cfg.epochs}")
        check_fits_config_json(self.out / CONFIG, path, meta, model_state, make_model, self.log)
        damaged_best = best_problem(self.out / BEST, meta, self.model)
        self._restore(path, meta, model_state, optim_arrays)
        logs = [(self.out / METRICS, METRIC_COLUMNS, "metrics")]
        if self.has_ba2m:
            logs.append((self.out / WEIGHTS_CSV, WEIGHT_COLUMNS, "ba2m_weights"))
        check_logs(logs, self.epoch, self.history, rebuild_logs, CHECKPOINT, self.log)
        if self.history is None:  # an older checkpoint: keep a history from now on, from the files if whole
            self.history = {"metrics": [], "ba2m_weights": []}
            for log_path, columns, key in logs:
                if log_path.exists() and log_problem(log_path, columns, self.epoch) is None:
                    self.history[key] = read_rows(log_path)
        if damaged_best:
            self._repair_best(damaged_best)
        if cfg.epochs > saved_epochs:
            self._write_config(self._previous_extensions() + [saved_epochs])
            self._save(self._snapshot())  # the extension sticks, even after a kill
            self.log(f"extending {self.out} from {saved_epochs} to {cfg.epochs} epochs: the remaining steps "
                     f"follow the {cfg.epochs}-epoch {cfg.schedule} schedule (lr at global step {self.global_step}: "
                     f"{self.lr_at(self.global_step):.4g})")
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
    def run(self, resume: bool = False, rebuild_logs: bool = False, checkpoint=None) -> dict:
        """Train (or resume) to ``config.epochs``, holding the run folder's lock throughout; returns a
        summary. ``rebuild_logs``: on resume, rewrite a malformed metrics.csv / ba2m_weights.csv from the
        checkpoint's history. ``checkpoint``: on resume, the folder's checkpoint.npz already read by
        ``load_checkpoint`` (so that it is read once), else None."""
        with run_folder_lock(self.out, self.log):
            try:
                return self._run(resume, rebuild_logs, checkpoint)
            except WriteError as exc:
                raise RunSaveError(self._save_failure(exc)) from exc

    def _save_failure(self, exc: WriteError) -> str:
        code = errno.errorcode.get(exc.errno, str(exc.errno))
        what = f"could not write {exc.filename}: {exc.strerror} ({code})"
        if self._saved_epoch is None:
            return f"{what}; nothing was saved"
        return (f"{what}; the last good checkpoint (epoch {self._saved_epoch}) is kept in {self.out / CHECKPOINT}. "
                f"Free some space (or raise the file-size limit) and continue with: python train_cifar.py --resume "
                f"--out {self.out}")

    def _run(self, resume: bool, rebuild_logs: bool, checkpoint=None) -> dict:
        cfg = self.config
        if resume:
            self._resume(rebuild_logs, checkpoint)
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
        except KeyboardInterrupt as exc:
            self._save(self._last_good)
            self._plots_on_stop()
            done = self._last_good[2]["epoch"]
            how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            raise TrainingInterrupted(
                f"{how} during epoch {done + 1}; saved the checkpoint of the last completed epoch ({done}) to "
                f"{self.out / CHECKPOINT} (the interrupted epoch is redone on resume). Continue with:\n"
                f"  python train_cifar.py --resume --out {self.out}", getattr(exc, "exit_status", 130)) from None
        rows = read_rows(self.out / METRICS)
        return {"out": str(self.out), "epochs": self.epoch, "best_top1": self.best_top1, "best_epoch": self.best_epoch,
                "last": rows[-1] if rows else None}

    def _announce(self) -> None:
        """The run's header line, then a note where the data set is smaller than ``--subset`` asked (the
        real counts are in config.json)."""
        c, n = self.config, self.config.subset
        att = c.attention + (f" ({c.ba2m_placement})" if c.attention in PLACED else "")   # BAM: between stages
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
                         lr_at=self.lr_at, progress=cfg.progress, track_weights=self.has_ba2m,
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
        self.history["metrics"].append(row)
        weights = self._last_weights = st["weights"]
        if wlog is not None:
            seen = weights[weights == weights]  # drop the NaN of images in the dropped partial batch
            stats = weight_statistics(e, seen)
            wlog.append(stats)
            self.history["ba2m_weights"].append(stats)
        snap = self._snapshot()
        if improved:
            save_checkpoint(self.out / BEST, *snap)  # best first: a crash in between redoes this epoch
        self._save(snap)
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


def evaluate_checkpoint(path, config: TrainConfig | None = None, data=None, checkpoint=None) -> dict:
    """Evaluate the model stored at ``path`` on the test split under each of the three eval weightings.

    ``config`` (default: the checkpoint's own) gives the data set, the eval batch size and the
    architecture the caller expects; a different architecture raises
    :class:`.checkpoint.ArchitectureMismatchError` naming both. ``checkpoint``: what
    ``load_checkpoint(path)`` returned, when the caller has read it already."""
    meta, model_state, _ = checkpoint if checkpoint is not None else load_checkpoint(path)
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
