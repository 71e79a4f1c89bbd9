"""Learning-rate schedules as pure functions of the global iteration (step) number.

The rate is set **per iteration** (not per epoch): ``lr = learning_rate(step, total_steps, ...)``
with ``step = epoch_index * steps_per_epoch + batch_index`` counted from 0. Because it depends on
nothing but the step, a resumed run recomputes exactly the rate an uninterrupted run would use.

- linear warm-up over the first ``warmup_steps`` steps: ``lr = base * (step + 1) / warmup_steps``
- ``"cosine"`` afterwards: ``lr = base * (1 + cos(pi * t)) / 2`` with
  ``t = (step - warmup_steps) / (total_steps - warmup_steps)`` in [0, 1)
- ``"step"``: ``base``, then ``base * 0.1`` from 50 % of ``total_steps`` and ``base * 0.01`` from
  75 % (milestones ``floor(0.5 * total)`` and ``floor(0.75 * total)``; with a whole number of epochs
  per half this is the classic "x0.1 at epochs E/2 and 3E/4")
- ``"constant"``: ``base`` (useful in tests)
"""
from __future__ import annotations

import math

SCHEDULES = ("cosine", "step", "constant")


def learning_rate(step: int, total_steps: int, base_lr: float, schedule: str = "cosine", warmup_steps: int = 0) -> float:
    """The learning rate for iteration ``step`` (0-based) of a run of ``total_steps`` iterations."""
    if schedule not in SCHEDULES:
        raise ValueError(f"learning_rate: unknown schedule {schedule!r}, expected one of {', '.join(SCHEDULES)}")
    if total_steps < 1 or step < 0 or warmup_steps < 0:
        raise ValueError(f"learning_rate: need total_steps >= 1, step >= 0, warmup_steps >= 0; got {total_steps}, {step}, {warmup_steps}")
    warmup_steps = min(int(warmup_steps), int(total_steps))
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(total_steps - warmup_steps, 1)
        t = min((step - warmup_steps) / span, 1.0)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    milestones = (math.floor(0.5 * total_steps), math.floor(0.75 * total_steps))
    return base_lr * 0.1 ** sum(step >= m for m in milestones)  # x0.1 per milestone passed
