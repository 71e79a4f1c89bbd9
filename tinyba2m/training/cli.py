"""Command line of ``train_cifar.py``: parse and check the options, then train, resume or evaluate.

Exit status: 0 done; 1 the run failed (non-finite loss, data set or checkpoint problem, a file
that cannot be written); 2 bad options (argparse's usage error, also for an architecture mismatch;
an unusable --out or --data-dir, a run folder in use by another run, an option that does nothing:
one line, before any data is loaded, leaving no folder behind); 130 interrupted by Ctrl-C, 143
terminated by SIGTERM (both after saving the checkpoint of the last completed epoch).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import pathlib
import signal
import sys
import textwrap
import threading
import time

from .. import __version__, backend
from ..attention.ba2m import EVAL_WEIGHTINGS, NORMALISATIONS
from ..attention.sar import SAR_ACTIVATIONS
from ..data import ARCHIVE_NAME, DATASETS, LAST_BATCH_POLICY, MEMBER_MD5, DatasetError, default_data_dir
from ..data.cifar100 import DATA_DIR_ENV_VAR
from ..models import ATTENTION_NAMES, INIT_SCHEMES, MODEL_NAMES, PLACEMENTS
from ..ops.validation import env_check_finite
from ..optim import SCHEDULES
from .checkpoint import ArchitectureMismatchError, CheckpointError, WriteError, atomic_write_text, load_checkpoint
from .config import RUNTIME_OPTIONS, TrainConfig
from .folders import RunFolderLocked, data_dir_problem, folder_problem, run_folder_lock, run_folder_problem
from .loop import NonFiniteLossError
from .trainer import (BEST, CHECKPOINT, LOSSES, METRICS, RunFolderError, RunSaveError, Terminated, Trainer,
                      TrainingInterrupted, evaluate_checkpoint)

D = TrainConfig()  # the defaults
# what --eval-only may take from the command line instead of the checkpoint's config
EVAL_OPTIONS = (*RUNTIME_OPTIONS, "dataset", "subset", "eval_batch_size", "model", "attention", "ba2m_placement")

EPILOG = f"""\
examples:
  python train_cifar.py
      the default short job: {D.model} + {D.attention} on the synthetic data set ({D.epochs} epochs, numpy)
  python train_cifar.py --dataset synthetic --model resnet20 --attention ba2m --epochs 2 --subset 512
  python train_cifar.py --dataset digits --model resnet20 --epochs 3     (pip install -e ".[digits]")
  python train_cifar.py --dataset cifar100 --model resnet20 --attention ba2m --epochs 200 \\
      --batch-size 128 --lr 0.1 --weight-decay 5e-4 --schedule cosine --backend cupy --out runs/r20_ba2m
  python train_cifar.py --resume --out runs/r20_ba2m          continue an interrupted run exactly
  python train_cifar.py --eval-only --checkpoint runs/r20_ba2m/best.npz

{textwrap.fill("last partial batch: " + LAST_BATCH_POLICY + ".", 100)}

run folder (--out): config.json, metrics.csv (per epoch: lr, train loss/acc, test loss/top-1/top-5 under
each BA²M eval weighting "population" (default), "batch" and "uniform", the largest BA²M weight, seconds,
images/s), checkpoint.npz (latest) and best.npz (best test top-1, weighting "population"), curves.png;
with BA²M also ba2m_weights.csv, weights.png and weighted_samples.png; run.lock while a run holds the
folder (a second run on it is refused, naming the holder; a killed run's lock is taken over). Ctrl-C or
SIGTERM saves the checkpoint of the last completed epoch and prints how to resume. A run whose loss turns
non-finite, or stays above 10 ln(classes), or whose BA²M weights collapse on one sample (over 50% of a
batch's weight) for 10 steps in a row, stops with exit 1, keeping the checkpoint of the last good epoch.
Either stop draws the plots of the completed epochs. Temporary files a killed run left behind
(.checkpoint.npz.<pid>.XXXXXXXX.tmp and the like, of processes that are gone) are removed on the next
start or resume.
options that do nothing in a run are refused (exit status 2), never recorded as if they applied: a BA²M
option (--ba2m-sar, --ba2m-temperature, --ba2m-normalisation) without --attention ba2m, --ba2m-placement
with --attention none or bam, --focal-gamma without --loss focal, --data-dir / --data-url with a data set other
than cifar100, --zero-init-residual with smallcnn, and training options with --eval-only. Their defaults
are never refused; config.json writes an inactive option as null and lists it under inactive_options.
A file that cannot be written (a full disk, a file-size limit) stops the run with one line naming it,
keeping the last good checkpoint. On --resume, a damaged checkpoint.npz is refused naming the intact
best.npz and how to continue from it; a damaged best.npz is re-saved; a checkpoint of another model
than config.json's is refused; a lost metrics.csv is rebuilt from the history the checkpoint keeps
(a malformed one with --rebuild-metrics).
exit status: 0 done, 1 run failed (non-finite or run-away loss, data, a file not written), 2 bad options,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""


def _int_at_least(lo):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {v}")
        return v
    return parse


def _float_in(lo, hi=math.inf, lo_open=False, hi_open=True):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi) and math.isfinite(v)
        if not ok:
            left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
            raise argparse.ArgumentTypeError(f"must be in {left}{lo}, {hi}{right}, got {text}")
        return v
    return parse


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The parser; its defaults are TrainConfig's (the backend's: $TINYBA2M_BACKEND, else numpy).
    ``suppress_defaults=True`` leaves out every option not given (to see which were)."""
    p = argparse.ArgumentParser(
        prog="train_cifar.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        argument_default=argparse.SUPPRESS if suppress_defaults else None,
        description="Train a CIFAR-100 CNN with or without BA²M (or SE, or focal loss) with tinyba2m\n"
                    "(hand-derived backward passes on NumPy or CuPy). Without options: a short job on the\n"
                    "offline synthetic data set; every epoch prints one summary line.")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS,
                   help="cifar100: the real data set (downloaded and checksummed into --data-dir); synthetic: an "
                        "offline, seeded, learnable stand-in with the same shapes (10,000 train / 2,000 test "
                        "images unless --subset); digits: scikit-learn's 1,797 hand-written 8x8 digits, a small "
                        "real set, offline (1,437 train / 360 test, 10 classes, no augmentation; needs "
                        "scikit-learn: pip install -e \".[digits]\") (default: %(default)s)")
    g.add_argument("--data-dir", metavar="DIR",
                   help="folder of the CIFAR-100 archive, or of torchvision's download (cifar-100-python.tar.gz "
                        "and/or cifar-100-python/{train,test,meta}), used as it is (default: $TINYBA2M_DATA_DIR, "
                        "else ~/.cache/tinyba2m/cifar100)")
    g.add_argument("--data-url", metavar="URL",
                   help="download the CIFAR-100 archive from URL (a mirror: http://, https:// or file://) instead of "
                        "the official server, which is slow (30-60 minutes for the 169 MB; docs/TRAINING.md); it must "
                        "match the official md5 (default: $TINYBA2M_CIFAR100_URL, else the official addresses)")
    g.add_argument("--subset", type=_int_at_least(1), metavar="N",
                   help="use only the first N images of each split (train and test), for quick runs; for the "
                        "synthetic set this is the number of images generated per split. A split with fewer than "
                        "N images is used whole, with a printed note; config.json records the real counts "
                        "(n_train, n_test) (default: all)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODEL_NAMES,
                   help="smallcnn: 3-conv plain CNN (~30k params, fast on CPU); resnetN: CIFAR ResNet of depth N "
                        "(widths 16/32/64, ResNet-20 ~0.28M params) (default: %(default)s)")
    g.add_argument("--attention", choices=ATTENTION_NAMES,
                   help="attention: none, se (squeeze-and-excitation), cbam (channel then 7x7 spatial gate), bam "
                        "(channel + dilated spatial gate between stages) or ba2m (batch aware attention); se, cbam "
                        "and ba2m at the end of the residual branch, before the skip addition (default: %(default)s)")
    g.add_argument("--ba2m-placement", choices=PLACEMENTS,
                   help="last: attention only in the last block of each stage (the library's default too; why: "
                        "docs/BA2M.md section 4); every: in every block. Applies to se and cbam too (default: "
                        "%(default)s)")
    g.add_argument("--init", choices=INIT_SCHEMES,
                   help="weight initialisation of conv and linear layers: he (He-normal) or torch (PyTorch's "
                        "default, kaiming-uniform with a=sqrt(5), i.e. U(+-1/sqrt(fan_in))) (default: %(default)s)")
    g.add_argument("--zero-init-residual", action="store_true",
                   help="ResNets: start the scale of the last BN of every residual branch at 0, so each block "
                        "starts as the identity and BA²M starts with weight 1 for every sample (default: off)")
    g.add_argument("--ba2m-sar", choices=SAR_ACTIVATIONS,
                   help="BA²M's sample-wise attention representation a_i: sigmoid: the mean of sigmoid(max of the "
                        "three branch maps), in (0, 1), so w_max/w_min < e^(1/tau) in every batch; none: the raw "
                        "mean of the max, unbounded, known to run away in deep networks (default: %(default)s)")
    g.add_argument("--ba2m-temperature", type=_float_in(0.0, lo_open=True), metavar="TAU",
                   help="temperature tau of BA²M's weighting, w = N softmax(a / tau); larger is gentler "
                        "(default: %(default)s, the spec's value)")
    g.add_argument("--ba2m-normalisation", choices=tuple(NORMALISATIONS),
                   help="softmax: w = N softmax(a / tau) over the batch, mean 1 (BA²M); softmax_sum: the paper's "
                        "formula literally, w = softmax(a / tau), sums to 1; sigmoid: w_i = 2 sigmoid(a_i / tau) "
                        "per sample, the ablation without coupling between samples (default: %(default)s)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=_int_at_least(1), help="epochs to train (default: %(default)s)")
    g.add_argument("--batch-size", type=_int_at_least(1),
                   help="training batch size; BA²M's softmax runs over this batch, so with --attention ba2m it must "
                        "be at least 2 (with one sample every BA²M weight is exactly 1 and its branches never "
                        "train); BAM too (its batch norms); 1 works with none, se or cbam (default: %(default)s)")
    g.add_argument("--eval-batch-size", type=_int_at_least(1), metavar="N",
                   help="test batch size; matters for BA²M's eval weighting 'batch' (default: --batch-size)")
    g.add_argument("--lr", type=_float_in(0.0, lo_open=True),
                   help="peak learning rate, > 0 (default: %(default)s; CIFAR recipe: 0.1 at batch 128)")
    g.add_argument("--momentum", type=_float_in(0.0, 1.0), help="SGD momentum in [0, 1) (default: %(default)s)")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (default: off)")
    g.add_argument("--weight-decay", type=_float_in(0.0),
                   help="L2 weight decay on conv and linear weights only (not on biases or BN scale/shift) "
                        "(default: %(default)s)")
    g.add_argument("--schedule", choices=[s for s in SCHEDULES if s != "constant"],
                   help="learning-rate decay, set per iteration: cosine to 0, or step (x0.1 at 50%% and 75%% of "
                        "training) (default: %(default)s)")
    g.add_argument("--warmup-epochs", type=_float_in(0.0),
                   help="linear warm-up from lr/steps to lr over this many epochs (may be fractional, must be "
                        "less than --epochs) (default: %(default)s)")
    g.add_argument("--loss", choices=LOSSES,
                   help="ce: softmax cross-entropy; focal: focal loss -(1-p_t)^gamma log p_t, the loss-based "
                        "re-weighting baseline (default: %(default)s)")
    g.add_argument("--focal-gamma", type=_float_in(0.0),
                   help="focusing parameter gamma >= 0 of the focal loss (default: %(default)s)")
    g.add_argument("--label-smoothing", type=_float_in(0.0, 1.0),
                   help="label smoothing eps in [0, 1), for either loss (default: %(default)s)")
    g.add_argument("--seed", type=_int_at_least(0),
                   help="seed of the weights, the data order and the augmentation; the synthetic images "
                        "themselves are fixed (default: %(default)s)")
    g = p.add_argument_group("run")
    g.add_argument("--backend", choices=backend.BACKENDS,
                   help="array backend: numpy (CPU), cupy (NVIDIA GPU) or cupysim (CuPy's rules simulated on the "
                        "CPU, counting host syncs) (default: $TINYBA2M_BACKEND, else numpy)")
    g.add_argument("--out", metavar="DIR",
                   help="run folder, created if missing; a new run needs one that holds no run yet (default: "
                        "runs/<timestamp>_<model>_<attention>)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.npz, with its saved options; the result "
                        "equals an uninterrupted run. With --epochs N above the saved number it extends the run to "
                        "N epochs on the N-epoch schedule (docs/TRAINING.md, the run folder)")
    g.add_argument("--rebuild-metrics", action="store_true",
                   help="with --resume: rewrite a malformed metrics.csv (and ba2m_weights.csv) from the per-epoch "
                        "history kept in checkpoint.npz; the old file is kept as metrics.csv.damaged (a missing "
                        "file is rebuilt without asking)")
    g.add_argument("--eval-only", action="store_true",
                   help="only evaluate --checkpoint on the test split (every BA²M eval weighting) and exit")
    g.add_argument("--checkpoint", metavar="PATH", help="checkpoint for --eval-only")
    g.add_argument("--no-progress", action="store_false", dest="progress",
                   help="no progress bars (the per-epoch summary lines are still printed)")
    p.add_argument("--version", action="version", version=f"tinyba2m {__version__}")
    if not suppress_defaults:
        p.set_defaults(**D.to_dict() | {"backend": _env_backend_or_none()})
    return p


def _env_backend_or_none():
    """``$TINYBA2M_BACKEND`` (else numpy); None for an unknown name (refused in :func:`_check` unless
    --backend is given)."""
    try:
        return backend.env_backend()
    except ValueError:
        return None


def _config_from_args(args) -> TrainConfig:
    """Every option's value under its config name (``--no-progress`` sets ``progress``)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def _explicit(argv) -> set:
    """Names (config fields) of the options given on the command line."""
    return set(vars(build_parser(suppress_defaults=True).parse_args(argv)))


def _check_environment(parser, args) -> None:
    """The environment's switches: an unknown value is one line and exit status 2."""
    for read in ((backend.env_backend,) if args.backend is None else ()) + (env_check_finite,):
        try:
            read()
        except ValueError as exc:
            _fail_on(parser, str(exc))


def _check(parser, args) -> None:
    _check_environment(parser, args)
    if args.eval_only and not args.checkpoint:
        parser.error("--eval-only needs --checkpoint PATH (e.g. runs/<run>/best.npz)")
    if args.eval_only and args.resume:
        parser.error("--eval-only and --resume exclude each other")
    if args.checkpoint and not args.eval_only:
        parser.error("--checkpoint is for --eval-only; to continue a run use --resume --out DIR")
    if args.resume and not args.out:
        parser.error("--resume needs --out DIR, the run folder to continue")
    if args.rebuild_metrics and not args.resume:
        parser.error("--rebuild-metrics is for --resume (it rewrites the run's metrics.csv from its checkpoint)")
    if args.nesterov and args.momentum == 0.0:
        parser.error("--nesterov needs --momentum > 0")
    if args.backend == "cupy":
        ok, why = backend.cupy_available()
        if not ok:
            parser.error(f"--backend cupy is not available here: {why}")


def _saved_config(parser, label: str, path, args, explicit, options, advice=None) -> tuple:
    """``(checkpoint, config, given)``: the checkpoint at ``path`` as ``load_checkpoint`` returns it
    (read here once and passed down to the trainer or the evaluation) and its config (an unreadable
    one is a usage error naming ``label``; with ``advice``, one line ending with ``advice()``), with
    those of ``options`` given on the command line put in, and every option's value as given (a dict)."""
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as exc:
        if advice is not None:
            _fail_on(parser, f"{label}: {exc}. {advice()}")
        parser.error(f"{label}: {exc}")
    config, given = TrainConfig.from_dict(checkpoint[0]["config"]), _config_from_args(args).to_dict()
    for k in options:
        if k in explicit:
            setattr(config, k, given[k])
    return checkpoint, config, given


def _best_instead(out: pathlib.Path) -> str:
    """What to do when the checkpoint.npz of the run folder ``out`` is damaged: continue from its
    intact best.npz (named, with its epoch), or start again."""
    try:
        meta, _, _ = load_checkpoint(out / BEST)
    except CheckpointError as exc:
        return f"Its {BEST} is no help ({exc}); start a new run"
    e = meta.get("epoch")
    return (f"The intact {out / BEST} holds epoch {e}: to continue from it, run "
            f"cp {out / BEST} {out / CHECKPOINT} and then --resume again (metrics.csv is cut back to epoch {e} and "
            f"the later epochs are trained again)")


def _resume_config(parser, args, explicit) -> tuple:
    """``(config, checkpoint)``: the saved config of the run in --out, and its checkpoint as read; only
    RUNTIME_OPTIONS and --epochs may be given anew (the trainer refuses fewer epochs than the run's).
    A damaged checkpoint.npz is one line naming the intact best.npz and how to continue from it."""
    out = pathlib.Path(args.out)
    checkpoint, saved, given = _saved_config(parser, "--resume", out / CHECKPOINT, args, explicit, RUNTIME_OPTIONS,
                                             advice=lambda: _best_instead(out))
    if "epochs" in explicit:
        saved.epochs = given["epochs"]            # extend the run (see --help of --resume)
    fixed = sorted(k for k in explicit if k in given and k not in RUNTIME_OPTIONS and given[k] != getattr(saved, k))
    if fixed:
        diff = "; ".join(f"--{k.replace('_', '-')} {given[k]} (saved: {getattr(saved, k)})" for k in fixed)
        parser.error(f"--resume continues {args.out} with its saved options, but these differ: {diff}. "
                     f"Drop them, or start a new run with another --out")
    return saved, checkpoint


def _fail_on(parser, problem) -> None:
    """Exit 2 with one line (no usage block: the options parse, a path is the problem)."""
    if problem:
        parser.exit(2, f"{parser.prog}: error: {problem}\n")


def _data_dir_problem(config: TrainConfig):
    if config.dataset != "cifar100":
        return None                                   # the other data sets do not read --data-dir
    if config.data_dir is not None:
        path, label = config.data_dir, "--data-dir"
    else:
        path = default_data_dir()
        label = f"${DATA_DIR_ENV_VAR}" if os.environ.get(DATA_DIR_ENV_VAR, "").strip() else "the default data folder"
    return data_dir_problem(path, label, ARCHIVE_NAME, tuple(MEMBER_MD5))


def _flag(field: str) -> str:
    return "--no-progress" if field == "progress" else "--" + field.replace("_", "-")


def _inactive_problem(config: TrainConfig, explicit, also=()) -> str | None:
    """One line naming the options given on the command line that have no effect with ``config``
    (:meth:`TrainConfig.inactive_options`, plus ``also``: ``{field: why}``), or None."""
    why = {**config.inactive_options(), **dict(also)}
    given = [k for k in (f.name for f in dataclasses.fields(TrainConfig)) if k in explicit and k in why]
    if not given:
        return None
    return ("; ".join(f"{_flag(k)} has no effect in this run: {why[k]}" for k in given)
            + f". Drop {'it' if len(given) == 1 else 'them'} (options that do nothing are refused, never recorded)")


def _check_config(parser, config: TrainConfig, resume: bool, explicit, held: contextlib.ExitStack) -> None:
    """What only the run's final options tell (new or resumed), then the folders; all before any work.
    A new run then takes the lock of its folder (in ``held``) and checks, holding it, that the folder
    holds no run (so a live run in it is named as such, not as a run to resume)."""
    _fail_on(parser, _inactive_problem(config, explicit))
    if config.attention == "ba2m" and config.batch_size < 2:
        parser.error(f"--batch-size {config.batch_size} with --attention ba2m: BA²M weighs the samples of a batch "
                     f"against each other, so with one sample every weight is exactly 1 and its branches never train; "
                     f"use --batch-size 2 or more (or --attention none / se / cbam)")
    if config.attention == "bam" and config.batch_size < 2:
        parser.error(f"--batch-size {config.batch_size} with --attention bam: both of BAM's branches end in a batch "
                     f"norm, which needs at least 2 samples to estimate batch statistics; use --batch-size 2 or more "
                     f"(or --attention none / se / cbam)")
    if not resume and config.warmup_epochs >= config.epochs:
        parser.error(f"--warmup-epochs {config.warmup_epochs:g} must be less than --epochs {config.epochs} (the "
                     f"warm-up would take the whole run)")
    if not resume:  # (a resumed folder was checked, and locked, before its checkpoint was read)
        _fail_on(parser, folder_problem("--out", config.out))
    _fail_on(parser, _data_dir_problem(config))
    if not resume:
        _hold(parser, held, config.out)
        _fail_on(parser, run_folder_problem(config.out, False, (CHECKPOINT, METRICS)))


def _hold(parser, held: contextlib.ExitStack, out) -> None:
    """Take the lock of the run folder ``out`` for the rest of ``held``; another live run's is one line."""
    try:
        held.enter_context(run_folder_lock(out))
    except RunFolderLocked as exc:
        _fail_on(parser, str(exc))


@contextlib.contextmanager
def _sigterm_raises():
    """While the block runs, SIGTERM raises :class:`.trainer.Terminated` (a KeyboardInterrupt: the
    run saves and stops as on Ctrl-C) in the main thread; only the first one raises, so a second
    SIGTERM cannot cut the save short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _eval_only(parser, args, explicit, held, data=None) -> int:
    checkpoint, cfg, _ = _saved_config(parser, "--checkpoint", args.checkpoint, args, explicit, EVAL_OPTIONS)
    training_only = {f.name: "--eval-only evaluates the checkpoint as it was trained"
                     for f in dataclasses.fields(TrainConfig) if f.name not in EVAL_OPTIONS}
    _fail_on(parser, _inactive_problem(cfg, explicit, training_only))
    _fail_on(parser, folder_problem("--out", args.out) if args.out else None)
    _fail_on(parser, _data_dir_problem(cfg))
    if args.out:
        _hold(parser, held, args.out)
    try:
        result = evaluate_checkpoint(args.checkpoint, cfg, data=data, checkpoint=checkpoint)
    except (ArchitectureMismatchError, backend.BackendUnavailableError) as exc:
        parser.error(str(exc))
    for mode in EVAL_WEIGHTINGS:
        print(f"{args.checkpoint} (epoch {result['epoch']}) on {result['dataset']} test ({result['n_test']} images), "
              f"eval weighting {mode}: loss {result[f'test_loss_{mode}']:.4f}  top-1 "
              f"{100 * result[f'test_top1_{mode}']:.2f}%  top-5 {100 * result[f'test_top5_{mode}']:.2f}%", flush=True)
    if args.out:
        atomic_write_text(pathlib.Path(args.out) / "eval.json", json.dumps(result, indent=2) + "\n")
    return 0


def main(argv=None, data=None, on_epoch_end=None) -> int:
    """Run the command line; returns the exit status (argparse exits with 2 on bad options).
    ``data`` / ``on_epoch_end`` are test hooks (a ready data set; a callback after each epoch)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    explicit = _explicit(argv)
    explicit.add("backend")  # this machine's choice (option, environment, else numpy), never the checkpoint's
    _check(parser, args)
    with _sigterm_raises(), contextlib.ExitStack() as held:
        return _run(parser, args, explicit, held, data, on_epoch_end)


def _run(parser, args, explicit, held, data, on_epoch_end) -> int:
    """The run, the resume or the evaluation of ``args``, the run folder's lock kept in ``held``."""
    try:
        if args.eval_only:
            return _eval_only(parser, args, explicit, held, data)
        if args.resume:
            _fail_on(parser, run_folder_problem(args.out, True, (CHECKPOINT, METRICS)))
            _hold(parser, held, args.out)
            config, checkpoint = _resume_config(parser, args, explicit)
        else:
            checkpoint = None
            config = _config_from_args(args)
            if config.out is None:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                config.out = str(pathlib.Path("runs") / f"{stamp}_{config.model}_{config.attention}")
        _check_config(parser, config, args.resume, explicit, held)
        try:
            summary = Trainer(config, data=data, on_epoch_end=on_epoch_end).run(resume=args.resume,
                                                                                 rebuild_logs=args.rebuild_metrics,
                                                                                 checkpoint=checkpoint)
        except (RunFolderError, ArchitectureMismatchError) as exc:
            _fail_on(parser, str(exc))
        except backend.BackendUnavailableError as exc:
            parser.error(str(exc))
        print(f"done: {summary['epochs']} epochs, best test top-1 {100 * summary['best_top1']:.2f}% "
              f"(epoch {summary['best_epoch']}); run folder {summary['out']}", flush=True)
        return 0
    except NonFiniteLossError as exc:
        print(f"error: {exc}. Stopped; the last good checkpoint (epoch {exc.epoch - 1}) is kept in "
              f"{pathlib.Path(config.out) / CHECKPOINT}. {exc.hint}", file=sys.stderr, flush=True)
        return 1
    except TrainingInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr, flush=True)
        return exc.exit_status
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\n{how} before training started; nothing was saved (a partial CIFAR-100 download is kept and "
              "resumes on the next run)", file=sys.stderr, flush=True)
        return getattr(exc, "exit_status", 130)
    except (DatasetError, CheckpointError, RunSaveError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except WriteError as exc:  # eval.json of --eval-only --out
        print(f"error: could not write {exc.filename}: {exc.strerror}", file=sys.stderr, flush=True)
        return 1
