"""Stochastic gradient descent with momentum (heavy-ball or Nesterov) and decoupled-from-BN
weight decay — the update of PyTorch's ``torch.optim.SGD`` (dampening 0):

    g = grad + wd * p            (wd only for decayed parameters, see below)
    v = momentum * v + g         (v starts at 0, i.e. the first step has v = g)
    step = g + momentum * v      if nesterov else v
    p = p - lr * step

Which parameters are decayed: those with ``ndim >= 2`` — conv kernels (4-D) and linear weights
(2-D). One-dimensional parameters — biases and the BatchNorm scale ``gamma`` / shift ``beta``
(including the BNs inside attention modules) — get no weight decay: shrinking a BN scale towards
0 does not regularise the function (the next BN undoes it) and only fights the normalisation.
``decay_filter`` may override the rule.

Parameters without a gradient (``grads[key] is None`` after ``zero_grad(set_to_none=True)`` + backward) are
skipped by design, as in PyTorch: no update, no weight decay, their momentum buffer untouched.
A module may leave a gradient ``None`` on purpose: BA²M skips its branches when the weights do
not depend on them (a batch of one with a softmax normalisation in training, ``"uniform"``
eval), so their parameters get no gradient. A step in which *no* parameter has a gradient is an
error (backward was not run).

Parameters are updated in place (the arrays the model holds are modified), so a model and its
optimiser stay linked. The momentum buffers are keyed by the parameter's qualified name
(``Module.named_parameters``) and saved with :meth:`state_dict`.
"""
from __future__ import annotations

from .. import backend


def default_decay_filter(qualified_name: str, param) -> bool:
    """True if ``param`` gets weight decay: multi-dimensional weights yes, biases / BN no."""
    return param.ndim >= 2


class SGD:
    """SGD over every parameter of ``model``; ``lr`` may be changed between steps (schedules)."""

    def __init__(self, model, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, decay_filter=default_decay_filter):
        if not lr > 0:
            raise ValueError(f"SGD: lr must be > 0, got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.model = model
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.decayed = {name: bool(decay_filter(name, mod.params[key])) for name, mod, key in model.named_parameters()}
        self.velocity = {}  # qualified name -> momentum buffer (created on the first step)
        self.steps = 0

    def step(self) -> None:
        """Apply one update with the gradients the model currently holds; parameters whose
        gradient is ``None`` are left alone (no update, no decay, momentum buffer untouched)."""
        updated = 0
        for name, mod, key in self.model.named_parameters():
            p, grad = mod.params[key], mod.grads.get(key)
            if grad is None:
                continue
            updated += 1
            g = grad + self.weight_decay * p if self.weight_decay and self.decayed[name] else grad
            if self.momentum:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = g.copy()
                else:
                    v *= self.momentum
                    v += g
                g = g + self.momentum * v if self.nesterov else v
            p -= self.lr * g
        if not updated and self.decayed:
            raise ValueError("SGD.step: no parameter has a gradient (run backward first)")
        self.steps += 1

    def zero_grad(self) -> None:
        self.model.zero_grad()

    # -- saving and loading --------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"velocity.<param name>": host array, ...}`` plus the hyper-parameters under
        ``"hparams"`` (a dict of numbers) — arrays and JSON-able values kept apart."""
        names = list(self.velocity)
        hosts = backend.to_host_all(self.velocity[k] for k in names)   # one device read per dtype
        arrays = {f"velocity.{k}": h for k, h in zip(names, hosts)}
        return {"arrays": arrays, "hparams": {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                                              "weight_decay": self.weight_decay, "steps": self.steps}}

    def load_state_dict(self, state: dict) -> None:
        """Restore momentum buffers and the step count; names and shapes are checked first."""
        params = {name: mod.params[key] for name, mod, key in self.model.named_parameters()}
        velocity = {}
        for k, v in state["arrays"].items():
            name = k[len("velocity."):] if k.startswith("velocity.") else k
            if name not in params:
                raise ValueError(f"SGD.load_state_dict: momentum buffer for unknown parameter {name!r}")
            if tuple(v.shape) != tuple(params[name].shape):
                raise ValueError(f"SGD.load_state_dict: {name}: expected shape {tuple(params[name].shape)}, got {tuple(v.shape)}")
            p = params[name]
            velocity[name] = backend.array_module(p).asarray(v).astype(backend.dtype_of(p))
        hp = state.get("hparams", {})
        self.velocity = velocity
        self.steps = int(hp.get("steps", 0))
        self.lr = float(hp.get("lr", self.lr))
