"""One training epoch (:func:`train_epoch`, stopped by a :class:`RunAwayGuard` when the loss
explodes or the BA²M weights collapse) and one evaluation pass (:func:`evaluate`, :func:`evaluate_all`)."""
from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

from .. import backend
from ..data import iterate_batches
from ..attention.ba2m import EVAL_WEIGHTINGS
from ..models import ba2m_modules, set_eval_weighting
from ..ops.losses import softmax_cross_entropy_forward
from ..ops.validation import NonFiniteValueError


class NonFiniteLossError(RuntimeError):
    """The loss (or the logits) became NaN or infinite; carries where it happened."""

    outcome = "diverged"
    hint = "Try a lower --lr or a --warmup-epochs."

    def __init__(self, epoch: int, step: int, global_step: int, value, phase: str = "training"):
        self.epoch, self.step, self.global_step, self.value, self.phase = epoch, step, global_step, value, phase
        where = f"global step {global_step}" if phase == "training" else "test batch"
        super().__init__(f"the run {self.outcome}: {value} in {phase} at epoch {epoch}, step {step} ({where})")


# The run-away guard: a finite loss this many times ln(num_classes) (chance is 1x) ...
RUNAWAY_LOSS_FACTOR = 10.0
# ... or one sample holding more than this share of a BA²M module's batch weight (sum of w) ...
RUNAWAY_WEIGHT_SHARE = 0.5
RUNAWAY_MIN_BATCH = 4  # (only for batches of at least this many samples: with 2, a share > 1/2 is normal)
# ... for this many consecutive training steps, or the epoch's mean training loss above the
# loss bound, stops the run as a non-finite loss does.
RUNAWAY_STEPS = 10

# Training steps whose statistics are read from a GPU at once (see train_epoch).
DEVICE_READ_EVERY = 10


class RunAwayError(NonFiniteLossError):
    """The loss stayed finite but exploded, or the BA²M weights collapsed on one sample."""

    outcome = "ran away"
    hint = ("BA²M options that tame a run-away: --ba2m-sar sigmoid (the default; the raw SAR 'none' is known to "
            "run away in deep networks), a larger --ba2m-temperature, --ba2m-normalisation sigmoid, "
            "--ba2m-placement last; or a lower --lr / a --warmup-epochs.")


class RunAwayGuard:
    """Counts consecutive training steps with an exploding loss or a collapsed BA²M weighting."""

    def __init__(self, num_classes: int):
        self.loss_bound = RUNAWAY_LOSS_FACTOR * math.log(max(int(num_classes), 2))
        self.streak = 0

    def step(self, loss: float, top_share: float, batch: int, epoch: int, step: int, global_step: int) -> None:
        """``top_share``: the largest ``max(w) / sum(w)`` over the model's BA²M modules (0 without)."""
        exploding = loss > self.loss_bound
        collapsed = batch >= RUNAWAY_MIN_BATCH and top_share > RUNAWAY_WEIGHT_SHARE
        self.streak = self.streak + 1 if (exploding or collapsed) else 0
        if self.streak >= RUNAWAY_STEPS:
            what = (f"training loss {loss:.4g} > {self.loss_bound:.3g} (= {RUNAWAY_LOSS_FACTOR:g} ln K)" if exploding
                    else f"one sample holds {100 * top_share:.0f}% of a BA²M module's batch weight")
            raise RunAwayError(epoch, step, global_step, f"{what} for {self.streak} consecutive steps")

    def epoch_end(self, mean_loss: float, epoch: int, step: int, global_step: int) -> None:
        if mean_loss > self.loss_bound:
            raise RunAwayError(epoch, step, global_step, f"mean training loss of the epoch {mean_loss:.4g} > "
                               f"{self.loss_bound:.3g} (= {RUNAWAY_LOSS_FACTOR:g} ln K, chance is ln K)")


def _forward(model, loss_fn, x, y, epoch, step, global_step, phase):
    """``(logits, loss)`` of ``model`` on ``x``; with the per-op debug checks on
    (``TINYBA2M_CHECK_FINITE=1``) the first op that sees NaN or inf raises
    :class:`~tinyba2m.ops.validation.NonFiniteValueError`, reported as a :class:`NonFiniteLossError`
    naming that op. (Otherwise NaN / inf in the logits is found when the step's statistics are read.)"""
    try:
        logits = model.forward(x)
        with backend.numpy_module.errstate(invalid="ignore"):  # inf logits: reported once the step is read
            return logits, loss_fn(logits, y)
    except NonFiniteValueError as exc:
        raise NonFiniteLossError(epoch, step, global_step, f"non-finite activations ({exc})", phase) from exc


def _read(pending: list) -> list:
    """``pending``'s ``(where, device row)`` pairs as ``(where, host row)``, in order, with ONE read
    from the device (each read waits for the queued GPU work; on the host it costs nothing);
    empties ``pending``."""
    if not pending:
        return []
    xp = backend.array_module(pending[0][1])
    host = backend.to_host(xp.stack([row for _, row in pending]))
    out = [(where, row) for (where, _), row in zip(pending, host)]
    pending.clear()
    return out


def _step_values(logits, loss, y, modules):
    """(finite, loss, correct[, top, top_share, w_1 .. w_B]) of one training step, float64, on the
    device: ``top`` / ``top_share`` the largest ``max(w) / mean(w)`` and ``max(w) / sum(w)`` over the
    BA²M modules' weights, relative to the batch's mean weight so that the readings compare (the
    batch softmax's mean weight is 1; the sum-to-one softmax's is 1/N); ``w`` the per-sample weight
    averaged over the modules."""
    xp = backend.array_module(logits)
    f64 = backend.float64
    head = [xp.isfinite(logits).all(), loss, (logits.argmax(axis=1) == y).sum()]
    if modules:
        w = [m.last_weights for m in modules]
        top = [wi.max() for wi in w]
        head += [xp.stack([t / wi.mean() for t, wi in zip(top, w)]).max(),
                 xp.stack([t / wi.sum() for t, wi in zip(top, w)]).max()]
        return xp.concatenate([xp.stack([xp.asarray(v, dtype=f64) for v in head]),
                               (sum(w) / len(w)).astype(f64)])
    return xp.stack([xp.asarray(v, dtype=f64) for v in head])


def train_epoch(model, loss_fn, optimizer, images, labels, *, epoch: int, epochs: int, batch_size: int, rng,
                global_step: int, lr_at, progress: bool = True, track_weights: bool = False, augment: bool = True,
                guard=None, read_every: int | None = None) -> dict:
    """Train one epoch (last partial batch dropped), each step at the rate ``lr_at(global_step)``
    (the global step before it); the data order and augmentation come from ``rng``, the epoch's
    own generator. Returns a dict with ``lr`` (first step), ``train_loss``, ``train_acc``,
    ``images``, ``train_seconds``, ``global_step`` (after the epoch), ``weights`` (host float64
    (N,): the weight each training image received, mean over the model's BA²M modules, NaN for
    the dropped partial batch; None unless ``track_weights``) and ``max_weight`` (the largest BA²M
    weight of any sample in any module, relative to its batch's mean weight; 1 without BA²M).
    ``guard`` (a :class:`RunAwayGuard`) raises :class:`RunAwayError` when the run runs away.

    ``read_every``: steps whose statistics (loss, accuracy, BA²M weights, NaN check) are read from
    the device at once; default 1 for host arrays (each step is checked before its update) and
    :data:`DEVICE_READ_EVERY` on a device (cupy, cupysim), where a read per step would stall the queue. A NaN or a
    run-away is reported at the step where it happened either way; with ``read_every`` > 1 the
    steps up to the read have updated the model (the run stops all the same, and its checkpoint
    is that of the last completed epoch)."""
    model.train()
    n = images.shape[0]
    steps = n // batch_size
    if read_every is None:
        read_every = DEVICE_READ_EVERY if backend.on_device() else 1
    weights = backend.numpy_module.full(n, float("nan")) if track_weights else None
    modules = [m for _, m in ba2m_modules(model)] if (track_weights or guard is not None) else []
    loss_sum, correct, seen, first_lr, max_weight, done = 0.0, 0, 0, None, 1.0, 0
    pending = []  # (step, global step, lr, idx), the step's _step_values on the device
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="batch", file=sys.stderr, disable=not progress,
               leave=False, dynamic_ncols=True)
    start = time.perf_counter()

    def take(rows):
        """Account for the steps read (in order), raising at the first bad one."""
        nonlocal loss_sum, correct, seen, max_weight, done
        for (step, gs, lr, idx), row in rows:
            if not row[0]:
                raise NonFiniteLossError(epoch, step, gs, "non-finite logits (NaN or inf)")
            value = float(row[1])
            if not math.isfinite(value):
                raise NonFiniteLossError(epoch, step, gs, f"non-finite loss ({value})")
            loss_sum, correct, seen, done = loss_sum + value, correct + int(row[2]), seen + len(idx), step
            if modules:
                max_weight = max(max_weight, float(row[3]))
            if weights is not None and modules:
                weights[idx] = row[5:]
            if guard is not None:
                guard.step(value, float(row[4]) if modules else 0.0, len(idx), epoch, step, gs)
        if rows:
            bar.update(len(rows))
            bar.set_postfix(loss=f"{loss_sum / done:.3f}", acc=f"{100 * correct / seen:.1f}%",
                            img_s=f"{seen / max(time.perf_counter() - start, 1e-9):.0f}", lr=f"{rows[-1][0][2]:.3g}",
                            refresh=False)

    try:
        for step, (x, y, idx) in enumerate(iterate_batches(images, labels, batch_size, shuffle=True, rng=rng,
                                                           drop_last=True, augment=augment), start=1):
            lr = lr_at(global_step)
            first_lr = lr if first_lr is None else first_lr
            optimizer.lr = lr
            try:
                logits, loss = _forward(model, loss_fn.forward, x, y, epoch, step, global_step + 1, "training")
            except NonFiniteLossError:
                take(_read(pending))  # an earlier step's error comes first
                raise
            pending.append(((step, global_step + 1, lr, idx), _step_values(logits, loss, y, modules)))
            if len(pending) >= read_every:
                take(_read(pending))  # before this step's update
            model.zero_grad(set_to_none=True)
            model.backward(loss_fn.backward())
            optimizer.step()
            global_step += 1
        take(_read(pending))
    finally:
        bar.close()
    seconds, mean_loss = time.perf_counter() - start, loss_sum / max(steps, 1)
    if guard is not None:
        guard.epoch_end(mean_loss, epoch, steps, global_step)
    return {"lr": first_lr, "train_loss": mean_loss, "train_acc": correct / max(seen, 1), "images": seen,
            "train_seconds": seconds, "global_step": global_step, "weights": weights, "max_weight": max_weight}


def evaluate(model, images, labels, batch_size: int, weighting: str = "population", epoch: int = 0) -> dict:
    """Cross-entropy, top-1 and top-5 (fractions) of ``model`` on (images, labels), eval mode,
    BA²M eval weighting ``weighting``; every image once, in order. The sums stay on the device and
    are read once, at the end."""
    model.eval()
    set_eval_weighting(model, weighting)
    phase = f"evaluation ({weighting})"
    pending = []  # (batch number, batch size), (finite, mean loss, top-1 hits, top-5 hits) on the device
    try:
        for step, (x, y, _) in enumerate(iterate_batches(images, labels, batch_size, shuffle=False, drop_last=False), 1):
            logits, (loss, _) = _forward(model, softmax_cross_entropy_forward, x, y, epoch, step, 0, phase)
            xp = backend.array_module(logits)
            k = min(5, logits.shape[1])
            hits = xp.argsort(-logits, axis=1)[:, :k] == y[:, None]
            pending.append(((step, int(y.shape[0])), xp.stack([xp.asarray(v, dtype=backend.float64) for v in (
                xp.isfinite(logits).all(), loss, hits[:, 0].sum(), hits.any(axis=1).sum())])))
    finally:
        set_eval_weighting(model, EVAL_WEIGHTINGS[0])  # back to the default
        model.train()
    loss_sum, top1, top5, n = 0.0, 0, 0, sum(size for (_, size), _ in pending)
    for (step, size), row in _read(pending):
        if not row[0]:
            raise NonFiniteLossError(epoch, step, 0, "non-finite logits (NaN or inf)", phase)
        loss_sum, top1, top5 = loss_sum + float(row[1]) * size, top1 + int(row[2]), top5 + int(row[3])
    return {"loss": loss_sum / max(n, 1), "top1": top1 / max(n, 1), "top5": top5 / max(n, 1)}


def evaluate_all(model, images, labels, batch_size: int, epoch: int = 0) -> dict:
    """``{mode: {"loss", "top1", "top5"}}`` for every BA²M eval weighting (``EVAL_WEIGHTINGS``:
    population, batch, uniform); a model without BA²M is evaluated once, under every name."""
    if not ba2m_modules(model):
        once = evaluate(model, images, labels, batch_size, "batch", epoch)
        return {mode: dict(once) for mode in EVAL_WEIGHTINGS}
    return {mode: evaluate(model, images, labels, batch_size, mode, epoch) for mode in EVAL_WEIGHTINGS}
