"""Training library: atomic checkpoints, architecture checks, metrics CSV, evaluation, exact
resume after an interruption (between and inside epochs), non-finite loss handling."""
import json
import os

import pytest

from tinyba2m import backend
from tinyba2m.data import make_synthetic
from tinyba2m.models import ba2m_modules, build_model
from tinyba2m.training import (ArchitectureMismatchError, CheckpointError, NonFiniteLossError, RunFolderError,
                               TrainConfig, Trainer, TrainingInterrupted, check_architecture, evaluate, evaluate_all,
                               load_checkpoint, load_model_state, read_rows, save_checkpoint)
from tinyba2m.training.checkpoint import atomic_write
from tinyba2m.training.metrics import METRIC_COLUMNS, TIMING_COLUMNS, CsvLog, truncate_after, weight_statistics

np = backend.numpy_module


@pytest.fixture(scope="module")
def tiny_data():
    return make_synthetic(96, 48, seed=0, num_classes=10, image_size=12)  # 12x12: 7x cheaper than 32x32


def config(out, **kw):
    base = dict(model="smallcnn", attention="ba2m", epochs=2, batch_size=32, lr=0.05, momentum=0.9, nesterov=True,
                warmup_epochs=0.5, out=str(out), progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data):
    """An uninterrupted 2-epoch run (3 steps per epoch) that the other runs are compared with."""
    out = tmp_path_factory.mktemp("reference")
    summary = Trainer(config(out), data=tiny_data, log=quiet).run()
    return out, summary


def quiet(_msg):
    pass


def metric_rows(path):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_rows(path)]


# -- checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    backend.seed(0)
    model = build_model("smallcnn", "ba2m", num_classes=10)
    meta = {"model": "smallcnn", "attention": "ba2m", "ba2m_placement": "every", "num_classes": 10, "epoch": 3,
            "host_rng_state": backend.get_rng_state(), "note": "é"}
    save_checkpoint(tmp_path / "c.npz", model.state_dict(), {"velocity.0.w": np.ones((2, 3), np.float32)}, meta)
    got_meta, state, optim = load_checkpoint(tmp_path / "c.npz")
    assert got_meta["epoch"] == 3 and got_meta["note"] == "é" and got_meta["format"] == "tinyba2m-checkpoint"
    assert got_meta["host_rng_state"] == json.loads(json.dumps(backend.get_rng_state()))
    assert set(state) == set(model.state_dict())
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())
    assert np.array_equal(optim["velocity.0.w"], np.ones((2, 3)))
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]  # no temporary file left behind
    assert oct(os.stat(tmp_path / "c.npz").st_mode & 0o777) != oct(0o600)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"old content")

    def broken(f):
        f.write(b"half a new fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="not a readable .npz checkpoint"):
        load_checkpoint(tmp_path / "junk.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a tinyba2m checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")
    good = tmp_path / "good.npz"
    save_checkpoint(good, {}, {}, {"model": "smallcnn", "attention": "none", "ba2m_placement": "every", "num_classes": 10})
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:-40])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "truncated.npz")


def test_architecture_mismatch_names_both(tmp_path):
    backend.seed(0)
    small = build_model("smallcnn", "ba2m", num_classes=10)
    path = tmp_path / "c.npz"
    save_checkpoint(path, small.state_dict(), {}, {"model": "smallcnn", "attention": "ba2m", "ba2m_placement": "every",
                                                   "num_classes": 10})
    want = {"model": "resnet20", "attention": "none", "ba2m_placement": "every", "num_classes": 10}
    with pytest.raises(ArchitectureMismatchError) as err:
        check_architecture(load_checkpoint(path)[0], want, path)
    msg = str(err.value)
    assert "smallcnn with attention=ba2m" in msg and "resnet20 with attention=none" in msg
    check_architecture({"model": "smallcnn", "attention": "ba2m", "ba2m_placement": "every", "num_classes": 10},
                       {"model": "smallcnn", "attention": "ba2m", "ba2m_placement": "every", "num_classes": 10})
    # a matching label but different shapes (e.g. a hand-edited file) is caught by load_state_dict
    with pytest.raises(ArchitectureMismatchError, match="expected shape"):
        load_model_state(build_model("smallcnn", "ba2m", num_classes=7), load_checkpoint(path)[1], path)


# -- metrics ---------------------------------------------------------------------------------------

def test_csv_log_and_truncate(tmp_path):
    path = tmp_path / "metrics.csv"
    log = CsvLog(path)
    for e in (1, 2, 3):
        log.append({c: (e if c == "epoch" else 0.5 * e) for c in METRIC_COLUMNS})
    assert [r["epoch"] for r in read_rows(path)] == [1, 2, 3]
    assert truncate_after(path, 1) == 2
    rows = read_rows(path)
    assert [r["epoch"] for r in rows] == [1] and rows[0]["lr"] == 0.5
    CsvLog(path).append({c: (2 if c == "epoch" else 1.0) for c in METRIC_COLUMNS})  # reopen: no second header
    assert [r["epoch"] for r in read_rows(path)] == [1, 2]
    with pytest.raises(ValueError, match="lacks columns"):
        log.append({"epoch": 4})
    with pytest.raises(ValueError, match="unexpected header"):
        CsvLog(path, columns=("epoch", "x"))


def test_weight_statistics():
    s = weight_statistics(2, np.array([0.5, 1.0, 1.5, 1.0]))
    assert s["epoch"] == 2 and s["count"] == 4 and s["mean"] == 1.0 and s["min"] == 0.5 and s["max"] == 1.5
    assert s["p05"] <= s["p25"] <= s["median"] <= s["p75"] <= s["p95"]


# -- evaluation ----------------------------------------------------------------------------------

def test_evaluate(tiny_data):
    backend.seed(0)
    model = build_model("smallcnn", "ba2m", num_classes=10)
    r = evaluate(model, tiny_data.test_images, tiny_data.test_labels, 16, "batch")
    assert 0 <= r["top1"] <= r["top5"] <= 1 and r["loss"] > 0
    assert model.training  # left in train mode, eval weighting back to the default "population"
    assert all(m.eval_weighting == "population" for _, m in ba2m_modules(model))
    with pytest.warns(RuntimeWarning, match="'population' has no training statistics"):  # never trained: batch instead
        every = evaluate_all(model, tiny_data.test_images, tiny_data.test_labels, 16)
    assert set(every) == {"population", "batch", "uniform"} and every["batch"] == r
    one = evaluate_all(model, tiny_data.test_images[:5], tiny_data.test_labels[:5], 1)
    assert one["batch"] == one["uniform"]  # batch of one: the batch softmax and uniform weighting agree
    plain = build_model("smallcnn", "none", num_classes=10)
    every = evaluate_all(plain, tiny_data.test_images, tiny_data.test_labels, 16)
    assert every["population"] == every["batch"] == every["uniform"]


# -- whole runs ------------------------------------------------------------------------------------

def test_run_writes_everything_and_is_deterministic(tmp_path, tiny_data, reference):
    ref, summary = reference
    for name in ("config.json", "metrics.csv", "checkpoint.npz", "best.npz", "curves.png", "weights.png",
                 "weighted_samples.png", "ba2m_weights.csv"):
        assert (ref / name).is_file(), name
    assert summary["epochs"] == 2 and len(read_rows(ref / "metrics.csv")) == 2
    cfg = json.loads((ref / "config.json").read_text())
    assert cfg["package_version"] and cfg["backend"] == "numpy" and cfg["model"] == "smallcnn" and cfg["lr"] == 0.05
    meta, _, _ = load_checkpoint(ref / "checkpoint.npz")
    assert meta["epoch"] == 2 and meta["global_step"] == 2 * (96 // 32)
    best, _, _ = load_checkpoint(ref / "best.npz")
    rows = read_rows(ref / "metrics.csv")
    assert best["epoch"] == max(rows, key=lambda r: (r["test_top1_population"], -r["epoch"]))["epoch"]
    Trainer(config(tmp_path / "again"), data=tiny_data, log=quiet).run()
    assert metric_rows(tmp_path / "again" / "metrics.csv") == metric_rows(ref / "metrics.csv")
    assert (tmp_path / "again" / "ba2m_weights.csv").read_text() == (ref / "ba2m_weights.csv").read_text()
    # another seed gives other numbers (so the comparison above can fail)
    Trainer(config(tmp_path / "seed1", seed=1, epochs=1), data=tiny_data, log=quiet).run()
    assert metric_rows(tmp_path / "seed1" / "metrics.csv")[0] != metric_rows(ref / "metrics.csv")[0]


def stop_after_epoch_1(epoch):
    if epoch == 1:
        raise KeyboardInterrupt


class InterruptingLoss:
    """Wraps a loss and raises KeyboardInterrupt at its n-th forward call (a Ctrl-C mid-epoch)."""

    def __init__(self, inner, at_call):
        self.inner, self.at_call, self.calls = inner, at_call, 0

    def forward(self, logits, y):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return self.inner.forward(logits, y)

    def backward(self, d=1.0):
        return self.inner.backward(d)


@pytest.mark.parametrize("where", ["between_epochs", "mid_epoch"])
def test_interrupt_and_resume_matches_uninterrupted(tmp_path, tiny_data, reference, where):
    ref, _ = reference
    cfg = config(tmp_path / "cut")
    trainer = Trainer(cfg, data=tiny_data, log=quiet, on_epoch_end=stop_after_epoch_1 if where == "between_epochs" else None)
    if where == "mid_epoch":
        trainer.loss_fn = InterruptingLoss(trainer.loss_fn, at_call=3 + 2)  # 3 steps per epoch: inside epoch 2
    with pytest.raises(TrainingInterrupted, match=r"--resume --out .*cut") as err:
        trainer.run()
    assert "last completed epoch (1)" in str(err.value)
    meta, _, _ = load_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    assert meta["epoch"] == 1 and len(read_rows(tmp_path / "cut" / "metrics.csv")) == 1
    Trainer(cfg, data=tiny_data, log=quiet).run(resume=True)
    assert metric_rows(tmp_path / "cut" / "metrics.csv") == metric_rows(ref / "metrics.csv")
    _, ref_state, ref_opt = load_checkpoint(ref / "checkpoint.npz")
    _, cut_state, cut_opt = load_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    assert all(np.array_equal(ref_state[k], cut_state[k]) for k in ref_state)
    assert sorted(ref_opt) == sorted(cut_opt) and all(np.array_equal(ref_opt[k], cut_opt[k]) for k in ref_opt)


def test_resume_drops_rows_written_after_the_checkpoint(tmp_path, tiny_data, reference):
    ref, _ = reference
    with pytest.raises(TrainingInterrupted):
        Trainer(config(tmp_path / "one"), data=tiny_data, log=quiet, on_epoch_end=stop_after_epoch_1).run()
    # a copy of the finished reference run with the checkpoint of epoch 1 — as if it had died after writing
    # epoch 2's row but before epoch 2's checkpoint: the row of epoch 2 must be dropped and redone
    run = tmp_path / "r"
    run.mkdir()
    for name in ("config.json", "metrics.csv", "ba2m_weights.csv"):
        (run / name).write_bytes((ref / name).read_bytes())
    (run / "checkpoint.npz").write_bytes((tmp_path / "one" / "checkpoint.npz").read_bytes())
    Trainer(config(run), data=tiny_data, log=quiet).run(resume=True)
    assert metric_rows(run / "metrics.csv") == metric_rows(ref / "metrics.csv")
    assert (run / "ba2m_weights.csv").read_text() == (ref / "ba2m_weights.csv").read_text()


def test_run_folder_rules(tmp_path, tiny_data, reference):
    ref, _ = reference
    with pytest.raises(RunFolderError, match="already holds a run"):
        Trainer(config(ref), data=tiny_data, log=quiet).run()
    with pytest.raises(RunFolderError, match="nothing to resume"):
        Trainer(config(tmp_path / "empty", epochs=1), data=tiny_data, log=quiet).run(resume=True)
    with pytest.raises(RunFolderError, match="larger than the 96 training images"):
        Trainer(config(tmp_path / "y", batch_size=200), data=tiny_data, log=quiet)
    # resuming into another architecture is refused, naming both
    with pytest.raises(ArchitectureMismatchError, match="smallcnn with attention=ba2m.*smallcnn with attention=se"):
        Trainer(config(ref, attention="se"), data=tiny_data, log=quiet).run(resume=True)


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.filterwarnings("ignore:invalid value encountered")  # NaN now reaches the logits
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_data):
    cfg = config(tmp_path / "nan", lr=1e38, weight_decay=0.0, warmup_epochs=0.0)
    with pytest.raises(NonFiniteLossError, match=r"diverged: non-finite .* at epoch \d+, step \d+") as err:
        Trainer(cfg, data=tiny_data, log=quiet).run()
    meta, state, _ = load_checkpoint(tmp_path / "nan" / "checkpoint.npz")
    assert meta["epoch"] == err.value.epoch - 1
    assert len(read_rows(tmp_path / "nan" / "metrics.csv")) == err.value.epoch - 1
    assert all(np.isfinite(v).all() for v in state.values())
