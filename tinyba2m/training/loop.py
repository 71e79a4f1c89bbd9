"""One training epoch and one evaluation pass.

``train_epoch`` runs the steps of one epoch: the learning rate of each step comes from the
schedule as a function of the global step, the data order and augmentation from the epoch's own
generator; it returns the epoch's statistics and, for BA²M models, the per-sample weight each
training image received (mean over the model's BA²M modules; NaN for images in the dropped last
partial batch). ``evaluate`` runs the test set in order, in eval mode, under one BA²M eval
weighting, and returns cross-entropy, top-1 and top-5.
"""
from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

from .. import backend
from ..data import iterate_batches
from ..models import sample_weights, set_eval_weighting
from ..optim import learning_rate
from ..ops.losses import softmax_cross_entropy_forward


class NonFiniteLossError(RuntimeError):
    """The loss (or the logits) became NaN or infinite; carries where it happened."""

    def __init__(self, epoch: int, step: int, global_step: int, value, phase: str = "training"):
        self.epoch, self.step, self.global_step, self.value, self.phase = epoch, step, global_step, value, phase
        where = f"global step {global_step}" if phase == "training" else "test batch"
        super().__init__(f"the run diverged: {value} in {phase} at epoch {epoch}, step {step} ({where})")


def _forward(model, x, epoch, step, global_step, phase):
    """``model.forward(x)``, turning NaN / inf in the activations into :class:`NonFiniteLossError`.

    Every op checks its float inputs and raises ``ValueError("...: <name> contains non-finite
    values ...")`` (:func:`tinyba2m.ops.validation.require_float`); that, or non-finite logits,
    means the run has diverged."""
    try:
        logits = model.forward(x)
    except ValueError as exc:
        if "non-finite" not in str(exc):
            raise
        raise NonFiniteLossError(epoch, step, global_step, f"non-finite activations ({exc})", phase) from exc
    xp = backend.array_module(logits)
    if not bool(xp.isfinite(logits).all()):
        raise NonFiniteLossError(epoch, step, global_step, "non-finite logits (NaN or inf)", phase)
    return logits


def train_epoch(model, loss_fn, optimizer, images, labels, *, epoch: int, epochs: int, batch_size: int, rng,
                global_step: int, total_steps: int, base_lr: float, schedule: str, warmup_steps: int,
                progress: bool = True, track_weights: bool = False) -> dict:
    """Train one epoch (last partial batch dropped). Returns a dict with ``lr`` (first step),
    ``train_loss``, ``train_acc``, ``images``, ``train_seconds``, ``global_step`` (after the
    epoch) and ``weights`` (host float64 (N,) or None)."""
    model.train()
    n = images.shape[0]
    steps = n // batch_size
    weights = backend.numpy_module.full(n, float("nan")) if track_weights else None
    loss_sum, correct, seen, first_lr = 0.0, 0, 0, None
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="batch", file=sys.stderr, disable=not progress,
               leave=False, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for step, (x, y, idx) in enumerate(iterate_batches(images, labels, batch_size, shuffle=True, rng=rng,
                                                           drop_last=True, augment=True), start=1):
            lr = learning_rate(global_step, total_steps, base_lr, schedule, warmup_steps)
            first_lr = lr if first_lr is None else first_lr
            optimizer.lr = lr
            logits = _forward(model, x, epoch, step, global_step + 1, "training")
            value = float(loss_fn.forward(logits, y))
            if not math.isfinite(value):
                raise NonFiniteLossError(epoch, step, global_step + 1, f"non-finite loss ({value})")
            model.clear_grads()
            model.backward(loss_fn.backward())
            optimizer.step()
            global_step += 1
            loss_sum += value
            correct += int((logits.argmax(axis=1) == y).sum())
            seen += int(y.shape[0])
            if weights is not None:
                weights[idx] = backend.to_host(sample_weights(model))
            elapsed = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / step:.3f}", acc=f"{100 * correct / seen:.1f}%",
                            img_s=f"{seen / max(elapsed, 1e-9):.0f}", lr=f"{lr:.3g}", refresh=False)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {"lr": first_lr, "train_loss": loss_sum / max(steps, 1), "train_acc": correct / max(seen, 1),
            "images": seen, "train_seconds": seconds, "global_step": global_step, "weights": weights}


def evaluate(model, images, labels, batch_size: int, weighting: str = "batch", epoch: int = 0) -> dict:
    """Cross-entropy, top-1 and top-5 (fractions) of ``model`` on (images, labels), eval mode,
    BA²M eval weighting ``weighting``; every image once, in order."""
    model.eval()
    set_eval_weighting(model, weighting)
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    try:
        for step, (x, y, _) in enumerate(iterate_batches(images, labels, batch_size, shuffle=False, drop_last=False), 1):
            logits = _forward(model, x, epoch, step, 0, f"evaluation ({weighting})")
            xp = backend.array_module(logits)
            loss, _ = softmax_cross_entropy_forward(logits, y)
            k = min(5, logits.shape[1])
            ranked = xp.argsort(-logits, axis=1)[:, :k]
            hits = ranked == y[:, None]
            loss_sum += float(loss) * int(y.shape[0])
            top1 += int(hits[:, 0].sum())
            top5 += int(hits.any(axis=1).sum())
            n += int(y.shape[0])
    finally:
        set_eval_weighting(model, "batch")
        model.train()
    return {"loss": loss_sum / max(n, 1), "top1": top1 / max(n, 1), "top5": top5 / max(n, 1)}


def evaluate_both(model, images, labels, batch_size: int, has_ba2m: bool, epoch: int = 0) -> dict:
    """``{"batch": {...}, "uniform": {...}}``; a model without BA²M is evaluated once."""
    batch = evaluate(model, images, labels, batch_size, "batch", epoch)
    uniform = evaluate(model, images, labels, batch_size, "uniform", epoch) if has_ba2m else dict(batch)
    return {"batch": batch, "uniform": uniform}
