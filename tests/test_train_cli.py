"""train_cifar.py: option checking (exit status 2), an end-to-end run that learns, the run folder,
determinism, Ctrl-C and --resume, --eval-only, architecture mismatch, divergence."""
import json
import pathlib
import subprocess
import sys

import pytest

from tinyba2m import backend
from tinyba2m.data import make_synthetic
from tinyba2m.training import load_checkpoint, read_rows
from tinyba2m.training.cli import main
from tinyba2m.training.metrics import TIMING_COLUMNS

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_FILES = ("config.json", "metrics.csv", "checkpoint.npz", "best.npz", "curves.png", "weights.png",
             "weighted_samples.png", "ba2m_weights.csv")


def tiny_args(out, *extra, epochs=2):
    return ["--out", str(out), "--epochs", str(epochs), "--batch-size", "32", "--no-progress", *extra]


def metric_rows(path):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_rows(path)]


def exit_status(argv, capsys, **kw):
    with pytest.raises(SystemExit) as err:
        main(argv, **kw)
    return err.value.code, capsys.readouterr().err


# -- options ---------------------------------------------------------------------------------------

def test_help_explains_options_and_last_batch_policy(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--help"])
    assert err.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("--dataset", "--ba2m-placement", "--warmup-epochs", "--focal-gamma", "--eval-only", "examples:",
                     "last partial training batch is dropped", "default: smallcnn", "exit status"):
        assert fragment in text, fragment


BAD = [
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
    (["--batch-size", "many"], "argument --batch-size: expected an integer >= 1, got 'many'"),
    (["--model", "resnet18"], "argument --model: invalid choice: 'resnet18'"),
    (["--attention", "eca"], "argument --attention: invalid choice: 'eca'"),
    (["--lr", "0"], "argument --lr: must be in (0.0, inf), got 0"),
    (["--lr", "-0.1"], "argument --lr: must be in (0.0, inf), got -0.1"),
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    (["--subset", "0"], "argument --subset: must be an integer >= 1, got 0"),
    (["--ba2m-temperature", "0"], "argument --ba2m-temperature: must be in (0.0, inf), got 0"),
    (["--ba2m-normalisation", "tanh"], "argument --ba2m-normalisation: invalid choice: 'tanh'"),
    (["--label-smoothing", "1"], "argument --label-smoothing: must be in [0.0, 1.0), got 1"),
    (["--momentum", "0", "--nesterov"], "--nesterov needs --momentum > 0"),
    (["--eval-only"], "--eval-only needs --checkpoint PATH"),
    (["--resume"], "--resume needs --out DIR"),
    (["--checkpoint", "x.npz"], "--checkpoint is for --eval-only"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_options_exit_2_with_a_clear_message(argv, message, capsys):
    code, err = exit_status(argv, capsys)
    assert code == 2
    assert message in err, err


def test_cupy_without_a_gpu_exits_2(capsys):
    ok, _ = backend.cupy_available()
    if ok:
        pytest.skip("a CUDA GPU is available here")
    code, err = exit_status(["--backend", "cupy"], capsys)
    assert code == 2 and "--backend cupy is not available here" in err and "pip install cupy" in err


def test_script_exit_status_is_2_for_bad_options():
    r = subprocess.run([sys.executable, str(ROOT / "train_cifar.py"), "--batch-size", "0"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "--batch-size: must be an integer >= 1" in r.stderr


def test_script_runs_on_synthetic_data(tmp_path):
    """The real command line (100-class synthetic data, first 64 images per split, SE attention)."""
    r = subprocess.run([sys.executable, str(ROOT / "train_cifar.py"), "--subset", "64", "--epochs", "1",
                        "--batch-size", "32", "--attention", "se", "--no-progress", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "epoch   1/1" in r.stdout and "done: 1 epochs" in r.stdout
    assert "synthetic: 64 train / 64 test images, 100 classes" in r.stdout
    for name in ("config.json", "metrics.csv", "checkpoint.npz", "best.npz", "curves.png"):
        assert (tmp_path / "run" / name).is_file()
    assert not (tmp_path / "run" / "weights.png").exists()  # BA²M plots only for BA²M


# -- end to end ------------------------------------------------------------------------------------

def test_end_to_end_learns_and_writes_the_run_folder(tmp_path, capsys):
    """256 training images (32x32) of 10 synthetic classes (chance: 10 %), 3 epochs of smallcnn + BA²M."""
    import matplotlib.image
    data = make_synthetic(256, 100, seed=0, num_classes=10)
    out = tmp_path / "e2e"
    assert main(["--out", str(out), "--epochs", "3", "--batch-size", "16", "--no-progress"], data=data) == 0
    stdout = capsys.readouterr().out
    assert sum(line.startswith("epoch ") for line in stdout.splitlines()) == 3 and "done: 3 epochs" in stdout
    for name in RUN_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("curves.png", "weights.png", "weighted_samples.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        img = matplotlib.image.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    rows = read_rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    last = rows[-1]
    assert last["test_top1_batch"] > 0.3 and last["test_top1_uniform"] > 0.3, last
    assert last["test_top5_batch"] >= last["test_top1_batch"] and last["train_loss"] < rows[0]["train_loss"]
    config = json.loads((out / "config.json").read_text())
    for key in ("dataset", "model", "attention", "ba2m_placement", "epochs", "batch_size", "lr", "momentum", "nesterov",
                "weight_decay", "schedule", "warmup_epochs", "loss", "focal_gamma", "label_smoothing", "seed",
                "backend", "subset", "eval_batch_size", "zero_init_residual", "package_version"):
        assert key in config, key
    weights = read_rows(out / "ba2m_weights.csv")
    assert len(weights) == 3 and all(abs(w["mean"] - 1.0) < 1e-4 for w in weights)


def test_same_seed_same_metrics(tmp_path, small_data, finished_run):
    assert main(tiny_args(tmp_path / "again"), data=small_data) == 0
    assert metric_rows(tmp_path / "again" / "metrics.csv") == metric_rows(finished_run / "metrics.csv")


def test_ctrl_c_then_resume_matches_uninterrupted(tmp_path, small_data, finished_run, capsys):
    def ctrl_c_after_epoch_1(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    out = tmp_path / "cut"
    assert main(tiny_args(out), data=small_data, on_epoch_end=ctrl_c_after_epoch_1) == 130
    err = capsys.readouterr().err
    assert "interrupted during epoch 2" in err and f"python train_cifar.py --resume --out {out}" in err
    assert load_checkpoint(out / "checkpoint.npz")[0]["epoch"] == 1
    assert main(["--resume", "--out", str(out), "--no-progress"], data=small_data) == 0
    assert "resuming" in capsys.readouterr().out
    assert metric_rows(out / "metrics.csv") == metric_rows(finished_run / "metrics.csv")


def test_resume_refuses_changed_options(finished_run, small_data, capsys):
    code, err = exit_status(["--resume", "--out", str(finished_run), "--lr", "0.2"], capsys, data=small_data)
    assert code == 2 and "--lr 0.2 (saved: 0.05)" in err


def test_new_run_into_an_existing_run_folder_exits_2(finished_run, small_data, capsys):
    code, err = exit_status(tiny_args(finished_run), capsys, data=small_data)
    assert code == 2 and "already holds a run" in err and "--resume" in err


def test_eval_only_reproduces_the_last_test_metrics(tmp_path, finished_run, small_data, capsys):
    code = main(["--eval-only", "--checkpoint", str(finished_run / "checkpoint.npz"), "--out", str(tmp_path)],
                data=small_data)
    assert code == 0
    out = capsys.readouterr().out
    assert "eval weighting population" in out and "eval weighting batch" in out and "eval weighting uniform" in out
    result = json.loads((tmp_path / "eval.json").read_text())
    last = read_rows(finished_run / "metrics.csv")[-1]
    for key in [f"test_{k}_{m}" for m in ("population", "batch", "uniform") for k in ("top1", "top5")]:
        assert result[key] == pytest.approx(last[key], abs=1e-7), key
    assert result["test_loss_batch"] == pytest.approx(last["test_loss_batch"], rel=1e-6)


def test_eval_only_with_another_architecture_names_both(finished_run, small_data, capsys):
    code, err = exit_status(["--eval-only", "--checkpoint", str(finished_run / "best.npz"), "--model", "resnet20",
                             "--attention", "none"], capsys, data=small_data)
    assert code == 2
    assert "holds a smallcnn with attention=ba2m" in err and "requested model is a resnet20 with attention=none" in err


def test_eval_only_with_a_damaged_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    code, err = exit_status(["--eval-only", "--checkpoint", str(bad)], capsys)
    assert code == 2 and "not a readable .npz checkpoint" in err


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_divergence_exits_1_and_keeps_the_last_good_checkpoint(tmp_path, small_data, capsys):
    out = tmp_path / "nan"
    with pytest.warns(RuntimeWarning):  # NumPy's own, on the inf activations (overflow / invalid value)
        assert main(tiny_args(out, "--lr", "1e38", "--weight-decay", "0"), data=small_data) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "at epoch 1, step" in err and "last good checkpoint (epoch 0)" in err
    meta, state, _ = load_checkpoint(out / "checkpoint.npz")
    assert meta["epoch"] == 0  # the initial weights, written when the run started


@pytest.mark.slow
def test_resnet20_ba2m_command_from_the_issue(tmp_path):
    """``train_cifar.py --dataset synthetic --model resnet20 --attention ba2m --epochs 2 --subset 512``."""
    r = subprocess.run([sys.executable, str(ROOT / "train_cifar.py"), "--dataset", "synthetic", "--model", "resnet20",
                        "--attention", "ba2m", "--epochs", "2", "--subset", "512", "--out", str(tmp_path / "r20")],
                       capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert r.returncode == 0, r.stderr
    assert "epoch   1/2" in r.stdout and "epoch   2/2" in r.stdout
    for name in RUN_FILES:
        assert (tmp_path / "r20" / name).is_file(), name


def test_ba2m_temperature_and_normalisation_reach_every_module(tmp_path, small_data, monkeypatch):
    from tinyba2m.models import ba2m_modules
    from tinyba2m.training import trainer as trainer_module
    built = []
    real = trainer_module.make_model
    monkeypatch.setattr(trainer_module, "make_model", lambda config, n: built.append(real(config, n)) or built[-1])
    out = tmp_path / "run"
    args = ["--out", str(out), "--epochs", "1", "--batch-size", "32", "--no-progress",
            "--ba2m-temperature", "4", "--ba2m-normalisation", "sigmoid"]
    assert main(args, data=small_data) == 0
    mods = [m for _, m in ba2m_modules(built[0])]
    assert mods and all(m.temperature == 4.0 and m.normalisation == "sigmoid" for m in mods)
    config = json.loads((out / "config.json").read_text())
    assert config["ba2m_temperature"] == 4.0 and config["ba2m_normalisation"] == "sigmoid"


def test_ba2m_options_need_ba2m_only_where_used():
    from tinyba2m.training.config import TrainConfig
    from tinyba2m.attention import BA2MOptions
    assert TrainConfig(attention="se", ba2m_temperature=3.0, ba2m_placement="every").ba2m_options() == \
        BA2MOptions(placement="every")
    assert TrainConfig(attention="ba2m", ba2m_temperature=3.0).ba2m_options() == BA2MOptions(temperature=3.0)


def test_resume_and_eval_take_the_backend_of_this_machine_not_the_checkpoints(tmp_path, small_data, capsys):
    """CUPY_NOTES #2: a run saved on a GPU (config backend "cupy") resumes and evaluates on a machine
    without one, on the backend this machine chose (option, environment, else numpy)."""
    from tinyba2m.training.checkpoint import save_checkpoint

    def stop_after_epoch_1(epoch):
        raise KeyboardInterrupt
    out = tmp_path / "gpu_run"
    assert main(tiny_args(out), data=small_data, on_epoch_end=stop_after_epoch_1) == 130
    meta, model_state, optim_arrays = load_checkpoint(out / "checkpoint.npz")
    meta["config"]["backend"] = "cupy"
    save_checkpoint(out / "checkpoint.npz", model_state, optim_arrays, meta)
    assert main(["--resume", "--out", str(out), "--no-progress"], data=small_data) == 0
    assert "backend numpy" in capsys.readouterr().out
    assert main(["--eval-only", "--checkpoint", str(out / "checkpoint.npz")], data=small_data) == 0
