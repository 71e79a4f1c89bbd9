"""The glue between the training pieces, checked against independent references rather than
against another run (a wiring mistake shared by two runs cancels out): the learning rate the
optimiser really uses at every step and the ``lr`` column of metrics.csv, the host random state a
resumed run restores, exact top-1 / top-5 / loss of ``evaluate`` on known logits, what each BA²M
eval weighting (batch, uniform, population) does to the per-sample weights, that each test
column of metrics.csv holds the evaluation under its own weighting, the step at which the run-away
guard fires, best.npz chosen on the population weighting where batch ranks the epochs otherwise,
and a training set that does not divide by the batch size (the last partial batch dropped)."""
import math

import pytest

from tinyba2m import backend
from tinyba2m.attention.ba2m import EVAL_WEIGHTINGS
from tinyba2m.data import make_synthetic
from tinyba2m.models import ba2m_modules, sample_weights
from tinyba2m.nn.module import Module
from tinyba2m.optim import learning_rate
from tinyba2m.training import TrainConfig, Trainer, TrainingInterrupted, evaluate, load_checkpoint, read_rows
from tinyba2m.training import trainer as trainer_module
from tinyba2m.training.loop import RunAwayError, RunAwayGuard

np = backend.numpy_module

N_TRAIN, BATCH, EPOCHS, BASE_LR, WARMUP_EPOCHS = 64, 16, 2, 0.05, 0.5
STEPS_PER_EPOCH = N_TRAIN // BATCH                        # 4 (no partial batch to drop)
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH                    # 8
WARMUP_STEPS = round(WARMUP_EPOCHS * STEPS_PER_EPOCH)     # 2
SCHEDULE = [learning_rate(s, TOTAL_STEPS, BASE_LR, "cosine", WARMUP_STEPS) for s in range(TOTAL_STEPS)]


@pytest.fixture(scope="module")
def data():
    return make_synthetic(N_TRAIN, 16, seed=0, num_classes=10, image_size=12)


def config(out):
    return TrainConfig(model="smallcnn", attention="ba2m", epochs=EPOCHS, batch_size=BATCH, lr=BASE_LR,
                       schedule="cosine", warmup_epochs=WARMUP_EPOCHS, out=str(out), progress=False)


def quiet(_msg):
    pass


def trainer(cfg, data, **kw):
    """A Trainer that draws no plots (they are checked in test_training.py and cost more than these runs)."""
    t = Trainer(cfg, data=data, log=quiet, **kw)
    t._plots = lambda *args, **kwargs: None
    return t


def record_rates(trainer):
    """Make ``trainer``'s optimiser append the rate it holds to a list each time it steps; returns the list."""
    used, step = [], trainer.optimizer.step

    def recording_step():
        used.append(trainer.optimizer.lr)
        step()

    trainer.optimizer.step = recording_step
    return used


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    """An uninterrupted run: (run folder, the rates its optimiser used step by step, the trainer)."""
    out = tmp_path_factory.mktemp("glue")
    run = trainer(config(out), data)
    used = record_rates(run)
    run.run()
    return out, used, run


# -- the learning-rate schedule reaches the optimiser ----------------------------------------------

def test_the_optimiser_steps_with_the_scheduled_rate(reference):
    out, used, _ = reference
    assert SCHEDULE[:-1] != SCHEDULE[1:] and min(SCHEDULE) < BASE_LR  # neither the next step's rate nor constant
    assert used == SCHEDULE
    rows = read_rows(out / "metrics.csv")
    # lr column: the rate of each epoch's first step (written with 8 significant digits)
    assert [r["lr"] for r in rows] == pytest.approx([SCHEDULE[0], SCHEDULE[STEPS_PER_EPOCH]], rel=1e-7)


# -- resume restores the host random state ---------------------------------------------------------

def stop_after_epoch_1(epoch):
    if epoch == 1:
        raise KeyboardInterrupt


def test_resume_restores_the_host_random_state(tmp_path, data, reference):
    ref, ref_used, _ = reference
    cfg = config(tmp_path / "cut")
    with pytest.raises(TrainingInterrupted):
        trainer(cfg, data, on_epoch_end=stop_after_epoch_1).run()
    resumed = trainer(cfg, data)
    used = record_rates(resumed)
    backend.seed(987)  # draws between building the model and resuming: the restore must undo them
    ref_state = load_checkpoint(ref / "checkpoint.npz")[0]["host_rng_state"]
    assert backend.get_rng_state() != ref_state
    resumed.run(resume=True)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.npz")[0]["host_rng_state"] == ref_state
    assert backend.get_rng_state() == ref_state
    assert used == ref_used[STEPS_PER_EPOCH:] == SCHEDULE[STEPS_PER_EPOCH:]  # the schedule goes on where it stopped


# -- exact top-1 / top-5 / loss ------------------------------------------------------------------------

class KnownLogits(Module):
    """A stand-in model: returns the next rows of a fixed (N, K) logits table, batch after batch
    (``evaluate`` reads the images in order); the images only give the batch size."""

    def __init__(self, table):
        super().__init__()
        self.table, self.pos = table, 0

    def forward(self, x):
        n = x.shape[0]
        rows = self.table[self.pos:self.pos + n]
        self.pos += n
        return backend.to_device(rows)


def logits_with_label_ranks(ranks, k, seed=0):
    """(N, K) float64 logits with distinct values per row, and labels such that sample i's label
    has ``ranks[i]`` classes scoring above it (rank 0 = the arg-max)."""
    rng = backend.new_host_rng(seed)
    table = np.stack([rng.permutation(k) * 0.75 - 2.0 for _ in ranks])
    labels = np.array([int(np.argsort(-row)[r]) for row, r in zip(table, ranks)], dtype=np.int64)
    return table, labels


@pytest.mark.parametrize("ranks,k", [
    ([0, 3, 4, 5, 0, 1, 7, 4, 2, 6, 0], 8),   # ranks 4 (in the top 5) and 5 (just outside) included
    ([0, 1, 2, 2, 1], 3),                     # fewer than 5 classes: top-5 is every sample
])
def test_evaluate_top1_top5_and_loss_are_exact(ranks, k):
    table, labels = logits_with_label_ranks(ranks, k)
    images = np.zeros((len(ranks), 3, 1, 1), dtype=np.uint8)
    model = KnownLogits(table)
    got = evaluate(model, images, labels, batch_size=4, weighting="batch")  # batches 4, 4, 3 / 4, 1
    assert model.pos == len(ranks)                                          # every image once
    # the reference: rank = how many classes score strictly above the label; CE by log-sum-exp
    rank = [(row > row[y]).sum() for row, y in zip(table, labels)]
    assert rank == ranks
    assert got["top1"] == sum(r == 0 for r in rank) / len(rank)
    assert got["top5"] == sum(r < 5 for r in rank) / len(rank)
    ce = [math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(table, labels)]
    assert got["loss"] == pytest.approx(sum(ce) / len(ce), rel=1e-12)


# -- BA²M eval weightings ------------------------------------------------------------------------------

def spy_weights(model):
    """Make ``model.forward`` record the BA²M sample weights of each batch; returns the list."""
    seen, forward = [], model.forward

    def recording_forward(x):
        out = forward(x)
        seen.append(backend.to_host(sample_weights(model)).astype(np.float64))
        return out

    model.forward = recording_forward
    return seen


def batch_softmax_weights(w):
    """N softmax(a / tau) over the evaluation batch: mean exactly 1, and they vary with the sample."""
    return abs(w.mean() - 1.0) < 1e-5 and w.max() - w.min() > 1e-4


def uniform_weights(w):
    """w = 1 for every sample: a prediction does not depend on its batch-mates."""
    return bool((w == 1.0).all())


WEIGHT_RULES = {"batch": batch_softmax_weights, "uniform": uniform_weights}


@pytest.mark.parametrize("mode", sorted(WEIGHT_RULES))
def test_each_eval_weighting_gives_its_weights(data, reference, mode):
    model = reference[2].model
    seen = spy_weights(model)
    try:
        evaluate(model, data.test_images, data.test_labels, 6, mode)
    finally:
        del model.forward
    assert [len(w) for w in seen] == [6, 6, 4]
    assert all(WEIGHT_RULES[mode](w) for w in seen), (mode, seen)


def test_population_weights_ignore_batch_mates(data, reference):
    """Population weighting: each sample's weight is its own (running statistics, no softmax over
    the batch), so batches of 6 and of 1 give every sample the same weight, and not all 1."""
    model = reference[2].model
    weights = {}
    for size in (6, 1):
        seen = spy_weights(model)
        try:
            evaluate(model, data.test_images, data.test_labels, size, "population")
        finally:
            del model.forward
        weights[size] = np.concatenate(seen)
    assert np.allclose(weights[6], weights[1], rtol=1e-5, atol=0)
    assert weights[6].max() - weights[6].min() > 1e-4


def test_each_metrics_column_holds_its_own_weighting(data, reference):
    """The test columns of the last row equal a fresh evaluation of the final model under the
    column's weighting (so a column evaluated under another weighting is caught)."""
    out, _, run = reference
    last = read_rows(out / "metrics.csv")[-1]
    for mode in EVAL_WEIGHTINGS:
        want = evaluate(run.model, data.test_images, data.test_labels, BATCH, mode)
        for key in ("loss", "top1", "top5"):
            assert last[f"test_{key}_{mode}"] == pytest.approx(want[key], rel=1e-7, abs=1e-12), (mode, key)
    losses = [last[f"test_loss_{mode}"] for mode in EVAL_WEIGHTINGS]
    assert all(a != pytest.approx(b, rel=1e-6) for i, a in enumerate(losses) for b in losses[i + 1:])


# -- the run-away guard: when it fires ------------------------------------------------------------------

def test_run_away_guard_fires_on_the_tenth_bad_step_in_a_row_and_a_good_step_resets_it():
    bound = 10 * math.log(10)
    guard = RunAwayGuard(num_classes=10)
    for step in range(1, 10):
        guard.step(bound + 1, 0.1, 64, 1, step, step)            # 9 bad steps
    guard.step(1.0, 0.1, 64, 1, 10, 10)                          # a good one
    for step in range(11, 20):
        guard.step(bound + 1, 0.1, 64, 1, step, step)            # 9 bad steps again: not 10 in a row
    guard = RunAwayGuard(num_classes=10)
    for step in range(1, 10):
        guard.step(1.0, 0.6, 64, 1, step, step)                  # 9 collapsed steps
    with pytest.raises(RunAwayError, match="for 10 consecutive steps"):
        guard.step(1.0, 0.6, 64, 1, 10, 10)                      # the 10th in a row


# -- best.npz follows the population weighting, not batch ---------------------------------------------

# (population top-1, batch top-1) of each epoch: the two rank the epochs differently
SCRIPTED_TOP1 = {1: (0.30, 0.90), 2: (0.60, 0.20), 3: (0.50, 0.95)}


def test_best_checkpoint_follows_population_top1_where_batch_disagrees(tmp_path, data, monkeypatch):
    def scripted(model, data, config, epoch):
        pop, bat = SCRIPTED_TOP1[epoch]
        top1 = {"population": pop, "batch": bat, "uniform": 0.1}
        return {f"test_{k}_{mode}": (top1[mode] if k == "top1" else 1.0) for mode in EVAL_WEIGHTINGS
                for k in ("loss", "top1", "top5")}
    monkeypatch.setattr(trainer_module, "_test_columns", scripted)
    cfg = config(tmp_path / "best")
    cfg.epochs = 3
    summary = trainer(cfg, data).run()
    best, _, _ = load_checkpoint(tmp_path / "best" / "checkpoint.npz")
    saved, _, _ = load_checkpoint(tmp_path / "best" / "best.npz")
    assert (summary["best_epoch"], summary["best_top1"]) == (2, 0.60)
    assert (best["best_epoch"], best["best_top1"]) == (2, 0.60)
    assert saved["epoch"] == 2


# -- the dropped last partial batch --------------------------------------------------------------------

N_ODD = 100  # 3 batches of 32 and 4 images left over


def test_the_last_partial_batch_is_dropped(tmp_path, monkeypatch):
    """100 images in batches of 32: 3 steps an epoch, 96 images seen, a schedule over 3 * epochs
    steps, and BA²M only ever weighs whole batches of 32 while training."""
    odd = make_synthetic(N_ODD, 16, seed=0, num_classes=10, image_size=12)
    cfg = TrainConfig(model="smallcnn", attention="ba2m", epochs=2, batch_size=32, lr=BASE_LR, schedule="cosine",
                      out=str(tmp_path / "odd"), progress=False)
    run = trainer(cfg, odd)
    used = record_rates(run)
    train_batches, seen_images = [], []
    for _, module in ba2m_modules(run.model):
        forward = module.forward

        def spying(x, forward=forward, module=module):
            if module.training:
                train_batches.append(int(x.shape[0]))
            return forward(x)
        module.forward = spying
    epoch_images = []
    original = trainer_module.train_epoch

    def counting_train_epoch(*args, **kwargs):
        st = original(*args, **kwargs)
        epoch_images.append(st["images"])
        return st
    monkeypatch.setattr(trainer_module, "train_epoch", counting_train_epoch)
    summary = run.run()
    steps = N_ODD // 32
    assert run.steps_per_epoch == steps == 3 and run.total_steps == 2 * steps
    assert summary["epochs"] == 2 and run.global_step == 2 * steps
    assert len(used) == 2 * steps
    assert used == [learning_rate(s, 2 * steps, BASE_LR, "cosine", 0) for s in range(2 * steps)]
    assert epoch_images == [96, 96]
    assert train_batches and set(train_batches) == {32}
    assert load_checkpoint(tmp_path / "odd" / "checkpoint.npz")[0]["global_step"] == 2 * steps
