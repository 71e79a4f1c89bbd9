"""Whole training steps: forward, loss, backward and SGD update of a model at a batch size,
and where the time of a BA²M model goes.

``STEP_ROWS``: the default network of each attention, and BA²M in every block as an extra row.

The BA²M parts are timed by wrapping, for one profiled step, the forward/backward of every child
module of each ``BA2M`` (the branches, ``sar`` and ``weighting``; removed after). The parts of a
plain step (``STEP_PARTS``: conv, batch norm, the fused batch norm + ReLU, activations, the rest) are timed the same way, by
wrapping every module of those kinds.
"""
from __future__ import annotations

from contextlib import contextmanager

from .. import backend
from ..models import ba2m_modules, build_model
from ..nn import BatchNorm1d, BatchNorm2d, BatchNormReLU2d, Conv2d, ReLU, Sigmoid
from ..nn.loss import SoftmaxCrossEntropy
from ..optim import SGD
from .timing import median_time, peak_call_memory, timed_call

STEP_ROWS = ("none", "se", "ba2m", "ba2m-every")
BA2M_PARTS = ("channel", "local", "global", "fusion", "weighting")
CHILD_PARTS = {"channel_branch": "channel", "local_branch": "local", "global_branch": "global", "sar": "fusion"}


def row_model(row: str) -> tuple:
    """(attention, build_model keyword options) of a step-table row such as "ba2m" or "ba2m-every"."""
    attention, _, placement = row.partition("-")
    return attention, ({"placement": placement} if placement else {})


def make_training_step(model_name: str, row: str, batch_size: int, num_classes: int = 100, seed: int = 0):
    """(model, step) where ``step()`` runs one full SGD step on a fixed random float32 batch."""
    backend.seed(seed)
    attention, options = row_model(row)
    model = build_model(model_name, attention, num_classes=num_classes, **options)
    rng = backend.new_host_rng(seed)
    x = backend.to_device(rng.standard_normal((batch_size, 3, 32, 32)), backend.float32)
    y = backend.to_device(rng.integers(0, num_classes, batch_size))
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step():
        logits = model.forward(x)
        loss_fn.forward(logits, y)
        model.zero_grad(set_to_none=True)
        model.backward(loss_fn.backward())
        opt.step()

    return model, step


STEP_PARTS = ("conv", "batch norm", "bn+relu fused", "activations", "rest")
PART_KINDS = (("conv", (Conv2d,)), ("bn+relu fused", (BatchNormReLU2d,)), ("batch norm", (BatchNorm1d, BatchNorm2d)),
              ("activations", (ReLU, Sigmoid)))


def step_part(module):
    """The part of ``STEP_PARTS`` a module's own time counts in, or None (its time is in its
    children's parts or in the rest)."""
    for part, kinds in PART_KINDS:
        if isinstance(module, kinds):
            return part
    return None


def _wrap(seconds, part, fn):
    def timed(*args, **kwargs):
        out, spent = timed_call(fn, *args, **kwargs)
        seconds[part] = seconds.get(part, 0.0) + spent
        return out
    return timed


@contextmanager
def _part_timing(placed, parts):
    """Wrap forward/backward of each (module, part) of ``placed``; yields part -> seconds spent in it
    (the wrappers are removed after)."""
    seconds = dict.fromkeys(parts, 0.0)
    wrapped = []
    for mod, part in placed:
        mod.forward, mod.backward = _wrap(seconds, part, mod.forward), _wrap(seconds, part, mod.backward)
        wrapped.append(mod)
    try:
        yield seconds
    finally:
        for mod in wrapped:
            del mod.forward, mod.backward


def _time_shares(step, placed, parts, repeats: int) -> dict:
    """part -> median over ``repeats`` profiled steps of the fraction of the step spent in it."""
    step()  # warm-up
    shares = {p: [] for p in parts}
    for _ in range(repeats):
        with _part_timing(placed, parts) as seconds:
            total = timed_call(step)[1]
        for p in parts:
            shares[p].append(seconds[p] / total)
    return {p: sorted(v)[len(v) // 2] for p, v in shares.items()}


def step_part_shares(model, step, repeats: int = 3) -> dict:
    """Fraction of a training step's time spent in each part of ``STEP_PARTS`` (median over
    ``repeats`` profiled steps; "rest" is the step less the named parts: loss, residual adds,
    pooling, the linear layer, attention glue and the SGD update)."""
    placed = [(mod, step_part(mod)) for _, mod in model.named_modules() if step_part(mod) is not None]
    shares = _time_shares(step, placed, STEP_PARTS[:-1], repeats)
    return dict(shares, rest=1.0 - sum(shares.values()))


def ba2m_time_shares(model, step, repeats: int = 3) -> dict:
    """Fraction of a training step's time spent in each BA²M part (median over ``repeats``)."""
    placed = [(child, CHILD_PARTS.get(name, name)) for _, mod in ba2m_modules(model) for name, child in mod.children()]
    return _time_shares(step, placed, BA2M_PARTS, repeats)


def bench_training_steps(model_name="resnet20", batch_size=128, rows=STEP_ROWS, repeats=3, warmup=1,
                         profile_parts=True) -> dict:
    """Images/s, ratio to ``none``, peak memory for each row; the part shares of the plain step
    (``none``) and the BA²M part shares of the default network."""
    results = {}
    for row in rows:
        model, step = make_training_step(model_name, row, batch_size)
        seconds = median_time(step, repeats=repeats, warmup=warmup)
        memory = peak_call_memory(step)
        entry = {"step_s": seconds, "images_per_s": batch_size / seconds, "peak_step_memory_bytes": memory}
        if row == "none" and profile_parts:
            entry["part_time_share"] = step_part_shares(model, step, repeats=max(1, repeats - 1))
        if row == "ba2m" and profile_parts:
            entry["ba2m_time_share"] = ba2m_time_shares(model, step, repeats=max(1, repeats - 1))
        results[row] = entry
        del model, step
        backend.free_device_memory()
    base = results.get("none", {}).get("images_per_s")
    for entry in results.values():
        entry["ratio_to_none"] = entry["images_per_s"] / base if base else None
    return results


def device_counts(model_name="resnet20", batch_size=8, rows=("none", "se", "ba2m")) -> dict:
    """Host syncs and array-module calls of one training step (forward, loss, backward, SGD) of
    each row, counted on ``cupysim`` (switched on for the count, then back): what each step would
    cost a GPU in blocking reads and kernel launches, whatever the machine. Also where CuPy's names
    came from (``names``: the installed CuPy's version, or the snapshot)."""
    previous = backend.name
    xp = backend.use_backend("cupysim")
    try:
        out = {"names": xp.__namespace_source__, "rows": {}}
        for row in rows:
            _, step = make_training_step(model_name, row, batch_size)
            step()  # warm-up (the first step makes the optimizer's buffers)
            backend.reset_device_counters()
            step()
            c = backend.device_counters()
            out["rows"][row] = {"syncs_per_step": c["syncs"], "calls_per_step": c["calls"], "sync_kinds": c["sync_kinds"]}
    finally:
        backend.use_backend(previous)
    return out
