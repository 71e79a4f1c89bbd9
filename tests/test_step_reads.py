"""train_epoch reads its step statistics from the device every ``read_every`` steps (CUPY_NOTES #6):
the results, the weights, the model and the step a NaN or a run-away is reported at do not depend
on how often it reads; evaluate reads once per pass."""
import math
import sys

import numpy as np
import pytest

from tinyba2m import backend
from tinyba2m.data.synthetic import make_synthetic
from tinyba2m.optim import learning_rate
from tinyba2m.training import NonFiniteLossError, RunAwayError, TrainConfig, Trainer, loop
from tinyba2m.training.loop import RunAwayGuard, evaluate, train_epoch

STEPS = 8  # 256 images in batches of 32


@pytest.fixture(scope="module")
def data():
    return make_synthetic(256, 64, seed=0, num_classes=10, image_size=12)


def fresh(data, tmp_path, attention="ba2m"):
    cfg = TrainConfig(model="smallcnn", attention=attention, epochs=1, batch_size=32, progress=False,
                      out=str(tmp_path / "unused"), backend=backend.name)
    backend.seed(0)
    return Trainer(cfg, data=data, log=lambda m: None)


def one_epoch(trainer, data, read_every, guard=None):
    return train_epoch(trainer.model, trainer.loss_fn, trainer.optimizer, data.train_images, data.train_labels,
                       epoch=1, epochs=1, batch_size=32, rng=backend.new_host_rng(0), global_step=0,
                       lr_at=lambda step: learning_rate(step, STEPS, 0.05, "cosine"), progress=False,
                       track_weights=trainer.has_ba2m, guard=guard, read_every=read_every)


def count_reads(monkeypatch):
    """The loop's reads from the device (the input pipeline's to_host calls move host arrays)."""
    calls = []
    real = backend.to_host

    def counting(x):
        if sys._getframe(1).f_code.co_filename == loop.__file__:
            calls.append(1)
        return real(x)
    monkeypatch.setattr(loop.backend, "to_host", counting)
    return calls


def test_each_step_takes_its_rate_from_lr_at(data, tmp_path):
    trainer, asked = fresh(data, tmp_path, "none"), []
    st = train_epoch(trainer.model, trainer.loss_fn, trainer.optimizer, data.train_images, data.train_labels,
                     epoch=1, epochs=1, batch_size=32, rng=backend.new_host_rng(0), global_step=5,
                     lr_at=lambda step: asked.append(step) or 0.01 * (step + 1), progress=False)
    assert asked == list(range(5, 5 + STEPS)) and st["global_step"] == 5 + STEPS
    assert st["lr"] == 0.06 and trainer.optimizer.lr == 0.01 * (5 + STEPS)   # first step 5, last 5 + STEPS - 1


@pytest.mark.parametrize("attention", ["ba2m", "none"])
def test_results_do_not_depend_on_how_often_the_steps_are_read(xp, data, attention, monkeypatch, tmp_path):
    runs = {}
    for every in (1, 3, 8):
        trainer = fresh(data, tmp_path, attention)
        calls = count_reads(monkeypatch)
        st = one_epoch(trainer, data, every, RunAwayGuard(10))
        runs[every] = (st, len(calls), trainer.model.state_dict())
    for every in (3, 8):
        st, _, state = runs[every]
        ref, _, ref_state = runs[1]
        for key in ("lr", "train_loss", "train_acc", "images", "global_step", "max_weight"):
            assert st[key] == ref[key], (every, key)
        if attention == "ba2m":
            np.testing.assert_array_equal(st["weights"], ref["weights"])
            assert not np.isnan(st["weights"][:STEPS * 32]).any()
        assert all(np.array_equal(state[k], ref_state[k]) for k in ref_state)
    assert [runs[e][1] for e in (1, 3, 8)] == [STEPS, math.ceil(STEPS / 3), 1]  # the epoch's only reads


def test_a_gpu_is_read_every_few_steps_the_host_every_step(xp, data, monkeypatch, tmp_path):
    trainer = fresh(data, tmp_path)
    calls = count_reads(monkeypatch)
    one_epoch(trainer, data, None)
    assert len(calls) == (STEPS if xp is np else math.ceil(STEPS / loop.DEVICE_READ_EVERY))


class NaNFrom:
    """Wraps a model: the logits of forward call ``at`` and later are NaN."""

    def __init__(self, model, at):
        self.model, self.at, self.calls = model, at, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def forward(self, x):
        self.calls += 1
        out = self.model.forward(x)
        return out * float("nan") if self.calls >= self.at else out


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("every", [1, 4])
def test_a_nan_is_reported_at_the_step_where_it_happened(xp, data, every, tmp_path):
    trainer = fresh(data, tmp_path)
    steps_taken = []
    real_step = trainer.optimizer.step
    trainer.optimizer.step = lambda: (steps_taken.append(1), real_step())
    trainer.model = NaNFrom(trainer.model, at=3)
    with pytest.raises(NonFiniteLossError, match="non-finite logits") as err:
        one_epoch(trainer, data, every)
    assert (err.value.step, err.value.global_step) == (3, 3)
    # read every step: the bad step never updates the model; read every 4: steps 3 and 4 did
    assert len(steps_taken) == (2 if every == 1 else 3)


@pytest.mark.parametrize("every", [1, 4])
def test_the_run_away_guard_fires_at_the_same_step(data, every, monkeypatch, tmp_path):
    trainer = fresh(data, tmp_path)
    monkeypatch.setattr(loop, "RUNAWAY_STEPS", 3)
    real = trainer.loss_fn.forward
    trainer.loss_fn.forward = lambda logits, y: real(logits, y) * 1000.0  # finite, far above 10 ln K
    with pytest.raises(RunAwayError, match="for 3 consecutive steps") as err:
        one_epoch(trainer, data, every, RunAwayGuard(10))
    assert (err.value.step, err.value.global_step) == (3, 3)


@pytest.mark.filterwarnings("ignore:invalid value encountered", "ignore:.*has no training statistics")
def test_evaluate_reads_once_and_names_the_first_bad_batch(data, monkeypatch, tmp_path):
    trainer = fresh(data, tmp_path)
    calls = count_reads(monkeypatch)
    ok = evaluate(trainer.model, data.test_images, data.test_labels, 16)
    assert len(calls) == 1 and 0 <= ok["top1"] <= ok["top5"] <= 1 and math.isfinite(ok["loss"])
    with pytest.raises(NonFiniteLossError, match=r"non-finite logits .* in evaluation \(population\) at epoch 0, "
                                                 r"step 2 "):
        evaluate(NaNFrom(trainer.model, at=2), data.test_images, data.test_labels, 16)
