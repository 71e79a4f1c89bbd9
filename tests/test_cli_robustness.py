"""train_cifar.py robustness (issue 10, items 6-9): a batch of one with BA²M, unusable --out /
--data-dir (exit 2, one line, before any work, no folder left), --subset beyond the data set,
--warmup-epochs >= --epochs, extending a run with --resume --epochs N, stale temporary files, and
the plots of a run that stops early."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tinyba2m import backend
from tinyba2m.data import make_synthetic
from tinyba2m.optim import learning_rate
from tinyba2m.training import load_checkpoint, read_rows
from tinyba2m.training import cli as cli_module
from tinyba2m.training import trainer as trainer_module
from tinyba2m.training.cli import main
from test_train_cli import metric_rows, tiny_args

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 3  # 96 training images in batches of 32


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a run starts (data loading or model building)."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the options were refused")
    monkeypatch.setattr(cli_module, "Trainer", refuse)
    monkeypatch.setattr(cli_module, "evaluate_checkpoint", refuse)


def refused(argv, capsys, **kw):
    """(exit code, stderr) of a run expected to stop with SystemExit."""
    with pytest.raises(SystemExit) as err:
        main(argv, **kw)
    return err.value.code, capsys.readouterr().err


def one_line_error(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("train_cifar.py: error: "), err
    return lines[0]


def capture_model(monkeypatch):
    built = []
    real = trainer_module.make_model
    monkeypatch.setattr(trainer_module, "make_model", lambda config, n: built.append(real(config, n)) or built[-1])
    return built


# -- item 6: a batch of one ------------------------------------------------------------------------

def test_batch_of_one_with_ba2m_is_refused_up_front(tmp_path, small_data, capsys, no_work):
    code, err = refused(tiny_args(tmp_path / "run", "--batch-size", "1"), capsys, data=small_data)
    assert code == 2
    assert "--batch-size 1 with --attention ba2m" in err and "every weight is exactly 1" in err and "2 or more" in err
    assert not (tmp_path / "run").exists()


def test_batch_of_one_with_bam_is_refused_up_front(tmp_path, small_data, capsys, no_work):
    code, err = refused(tiny_args(tmp_path / "run", "--batch-size", "1", "--attention", "bam"), capsys, data=small_data)
    assert code == 2
    line, = [line for line in err.splitlines() if line.startswith("train_cifar.py: error: ")]
    assert "--batch-size 1 with --attention bam" in line and "batch norm" in line and "2 or more" in line
    assert not (tmp_path / "run").exists()


def test_header_names_the_placement_only_where_it_applies(tmp_path, small_data, capsys):
    """BAM goes between stages (no placement); SE, CBAM and BA²M show theirs."""
    for attention, shown in (("bam", "smallcnn + bam, "), ("cbam", "smallcnn + cbam (last), ")):
        out = tmp_path / attention
        assert main(tiny_args(out, "--attention", attention, epochs=1), data=small_data) == 0
        assert shown in capsys.readouterr().out


def test_batch_of_one_without_ba2m_trains(tmp_path, small_data):
    data = make_synthetic(6, 4, seed=0, num_classes=10, image_size=12)
    out = tmp_path / "run"
    assert main(["--out", str(out), "--epochs", "1", "--batch-size", "1", "--attention", "none", "--no-progress"],
                data=data) == 0
    assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == [1]


def test_help_documents_the_batch_of_one_rule(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "with --attention ba2m it must be at least 2" in text


@pytest.mark.parametrize("setup", ["train, batch of one", "eval, uniform"])
def test_gradient_check_of_skipped_branches_compares_zeros(setup):
    """The branches are skipped (no gradient); check_module zeroes the gradients first, so they
    compare as exact zeros with the numerical gradient, which is zero too."""
    from tinyba2m.attention import BA2M
    from tinyba2m.gradcheck.checker import check_module
    backend.seed(0)
    module = BA2M(4, reduction=2, eval_weighting="uniform")
    shape, train = ((1, 4, 4, 4), True) if setup.startswith("train") else ((3, 4, 4, 4), False)
    result = check_module(module, shape, train=train)
    assert result.passed, str(result)
    branch = [k for k in result.errors if k != "input"]
    assert branch and all(result.errors[k] == 0.0 for k in branch)


def test_gradient_check_fails_a_backward_that_skips_a_needed_gradient():
    """A backward that leaves a parameter's gradient at zero although the output depends on it fails."""
    from tinyba2m.gradcheck.checker import check_module
    from tinyba2m.nn import Linear

    class Forgetful(Linear):
        def backward(self, dout):
            dx = super().backward(dout)
            self.grads["b"] = self.grads["b"] * 0
            return dx

    backend.seed(0)
    result = check_module(Forgetful(3, 2), (4, 3))
    assert not result.passed and result.errors["b"] > 0.5


# -- item 7: unusable --out / --data-dir -----------------------------------------------------------

def bad_out(tmp_path, kind):
    (tmp_path / "a_file").write_text("x")
    return {"a file": tmp_path / "a_file",
            "below a file": tmp_path / "a_file" / "runs" / "r1",
            "a name too long": tmp_path / ("x" * 300) / "r1"}[kind]


@pytest.mark.parametrize("kind, message", [("a file", "is a file, not a folder"),
                                           ("below a file", "is a file, not a folder"),
                                           ("a name too long", "cannot be created")])
def test_bad_out_exits_2_with_one_line_before_any_work(tmp_path, kind, message, capsys, no_work):
    out = bad_out(tmp_path, kind)
    before = sorted(os.listdir(tmp_path))
    code, err = refused(tiny_args(out), capsys)
    assert code == 2
    line = one_line_error(err)
    assert "--out" in line and message in line
    assert sorted(os.listdir(tmp_path)) == before  # nothing made


def test_script_with_a_file_as_out_exits_2_with_one_line(tmp_path):
    """The real command line: no traceback, exit 2, one line on stderr, nothing on stdout."""
    (tmp_path / "a_file").write_text("x")
    r = subprocess.run([sys.executable, str(ROOT / "train_cifar.py"), "--out", str(tmp_path / "a_file")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert one_line_error(r.stderr) == f"train_cifar.py: error: --out {tmp_path / 'a_file'} is a file, not a folder"
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # no runs/ either


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_out_exits_2(tmp_path, capsys, no_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = refused(tiny_args(locked / "runs" / "r1"), capsys)
    finally:
        locked.chmod(0o755)
    assert code == 2 and "cannot be created: Permission denied" in one_line_error(err)
    assert os.listdir(locked) == []


def test_a_refused_write_exits_2_and_leaves_no_folder(tmp_path, monkeypatch, capsys, no_work):
    """What the operating system refuses (here: the probe file, as on a read-only file system)."""
    import tinyba2m.training.folders as folders

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(folders.tempfile, "mkstemp", read_only)
    code, err = refused(tiny_args(tmp_path / "new" / "run"), capsys)
    assert code == 2 and "--out" in err and "cannot be created: Read-only file system" in one_line_error(err)
    assert os.listdir(tmp_path) == []


def test_existing_run_is_refused_before_any_work(finished_run, capsys, no_work):
    code, err = refused(tiny_args(finished_run), capsys)
    assert code == 2 and "already holds a run" in one_line_error(err)


@pytest.mark.parametrize("kind", ["a file", "missing"])
def test_resume_of_no_run_folder_exits_2(tmp_path, kind, capsys, no_work):
    out = tmp_path / "r"
    if kind == "a file":
        out.write_text("x")
    code, err = refused(["--resume", "--out", str(out)], capsys)
    assert code == 2 and f"--resume: there is no run folder {out}" in one_line_error(err)


@pytest.mark.parametrize("kind, message", [
    ("archive", "is the archive itself; give the folder that holds it: --data-dir {parent}"),
    ("file", "is a file, not a folder"),
    ("below a file", "cannot be created: {parent} is a file, not a folder")])
def test_bad_data_dir_exits_2_before_any_work(tmp_path, kind, message, capsys, no_work):
    archive = tmp_path / "cifar-100-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really")
    data_dir = {"archive": archive, "file": tmp_path / "notes.txt",
                "below a file": tmp_path / "notes.txt" / "cifar"}[kind]
    (tmp_path / "notes.txt").write_text("x")
    code, err = refused(tiny_args(tmp_path / "run", "--dataset", "cifar100", "--data-dir", str(data_dir)), capsys)
    assert code == 2
    parent = tmp_path if kind == "archive" else tmp_path / "notes.txt"
    assert message.format(parent=parent) in one_line_error(err)
    assert not (tmp_path / "run").exists()


def test_data_dir_from_the_environment_is_named(tmp_path, monkeypatch, capsys, no_work):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("TINYBA2M_DATA_DIR", str(tmp_path / "f"))
    code, err = refused(tiny_args(tmp_path / "run", "--dataset", "cifar100"), capsys)
    assert code == 2 and f"$TINYBA2M_DATA_DIR {tmp_path / 'f'} is a file" in one_line_error(err)


def test_eval_only_with_a_bad_out_exits_2(tmp_path, finished_run, capsys, no_work):
    (tmp_path / "f").write_text("x")
    code, err = refused(["--eval-only", "--checkpoint", str(finished_run / "best.npz"), "--out", str(tmp_path / "f")],
                        capsys)
    assert code == 2 and "is a file, not a folder" in one_line_error(err)


def test_a_failed_set_up_removes_the_run_folder(tmp_path, small_data, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(trainer_module, "save_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space left"):
        main(tiny_args(tmp_path / "deep" / "run"), data=small_data)
    assert os.listdir(tmp_path) == []


# -- item 8: --subset, --warmup-epochs, --resume --epochs N ------------------------------------------

def test_subset_beyond_the_data_set_is_noted_and_recorded(tmp_path, small_data, capsys):
    out = tmp_path / "run"
    assert main(tiny_args(out, "--subset", "200", epochs=1), data=small_data) == 0
    text = capsys.readouterr().out
    assert "note: --subset 200 is more than" in text and "using all 96 training and 48 test images" in text
    config = json.loads((out / "config.json").read_text())
    assert (config["subset"], config["n_train"], config["n_test"]) == (200, 96, 48)


def test_subset_within_the_data_set_prints_no_note(tmp_path, small_data, capsys):
    assert main(tiny_args(tmp_path / "run", "--subset", "48", epochs=1), data=small_data) == 0
    assert "note: --subset" not in capsys.readouterr().out


@pytest.mark.parametrize("warmup, epochs", [("2", "2"), ("3.5", "2")])
def test_warmup_as_long_as_the_run_is_refused(tmp_path, warmup, epochs, capsys, no_work):
    code, err = refused(["--out", str(tmp_path / "r"), "--warmup-epochs", warmup, "--epochs", epochs], capsys)
    assert code == 2 and f"--warmup-epochs {warmup} must be less than --epochs {epochs}" in err
    assert not (tmp_path / "r").exists()


def copy_run(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path, finished_run, small_data, capsys):
    out = copy_run(finished_run, tmp_path)
    assert main(["--resume", "--out", str(out), "--epochs", "4", "--no-progress"], data=small_data) == 0
    text = capsys.readouterr().out
    assert f"extending {out} from 2 to 4 epochs" in text and "done: 4 epochs" in text
    rows, before = metric_rows(out / "metrics.csv"), metric_rows(finished_run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[:2] == before                                    # metrics.csv continues
    for r in rows[2:]:                                           # the 4-epoch schedule at the global step
        step = (r["epoch"] - 1) * STEPS
        assert r["lr"] == pytest.approx(learning_rate(step, 4 * STEPS, 0.05, "cosine"), rel=1e-6)
    meta = load_checkpoint(out / "checkpoint.npz")[0]
    assert (meta["epoch"], meta["global_step"], meta["config"]["epochs"]) == (4, 4 * STEPS, 4)
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 4 and config["epochs_extended_from"] == [2]
    assert len(read_rows(out / "ba2m_weights.csv")) == 4


def test_resume_with_more_epochs_extends_an_interrupted_run(tmp_path, small_data, capsys):
    def ctrl_c_after_epoch_1(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    out = tmp_path / "cut"
    assert main(tiny_args(out), data=small_data, on_epoch_end=ctrl_c_after_epoch_1) == 130
    assert main(["--resume", "--out", str(out), "--epochs", "3", "--no-progress"], data=small_data) == 0
    rows = read_rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0]["lr"] == pytest.approx(0.05)
    assert [r["lr"] for r in rows[1:]] == pytest.approx([learning_rate(s, 3 * STEPS, 0.05, "cosine")
                                                         for s in (STEPS, 2 * STEPS)], rel=1e-6)


def test_an_extension_is_kept_when_interrupted_before_its_first_epoch(tmp_path, finished_run, small_data, capsys,
                                                                       monkeypatch):
    out = copy_run(finished_run, tmp_path)
    real = trainer_module.train_epoch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(trainer_module, "train_epoch", interrupted)
    assert main(["--resume", "--out", str(out), "--epochs", "3", "--no-progress"], data=small_data) == 130
    monkeypatch.setattr(trainer_module, "train_epoch", real)
    assert main(["--resume", "--out", str(out), "--no-progress"], data=small_data) == 0  # no --epochs needed now
    assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == [1, 2, 3]


def test_resume_cannot_shrink_a_run(finished_run, small_data, capsys):
    code, err = refused(["--resume", "--out", str(finished_run), "--epochs", "1"], capsys, data=small_data)
    assert code == 2 and "--epochs can only grow" in err and "a run of 2 epochs" in err


@pytest.mark.parametrize("argv", [["--resume", "--epochs", "3"], ["--eval-only", "--checkpoint"]])
def test_the_checkpoint_is_read_once(finished_run, tmp_path, small_data, monkeypatch, argv):
    """The command line reads checkpoint.npz for the saved config and passes it down: the trainer's
    resume and the evaluation do not read it again."""
    from tinyba2m.training import resume_checks
    out = copy_run(finished_run, tmp_path)
    reads = []

    def counting(path):
        reads.append(pathlib.Path(path).name)
        return load_checkpoint(path)
    for module in (cli_module, trainer_module, resume_checks):
        monkeypatch.setattr(module, "load_checkpoint", counting)
    if argv[0] == "--resume":
        argv = ["--resume", "--out", str(out), "--epochs", "3", "--no-progress"]
    else:
        argv = ["--eval-only", "--checkpoint", str(out / "checkpoint.npz")]
    assert main(argv, data=small_data) == 0
    assert reads.count("checkpoint.npz") == 1, reads


def test_resume_of_a_finished_run_says_how_to_extend_it(tmp_path, finished_run, small_data, capsys):
    out = copy_run(finished_run, tmp_path)
    assert main(["--resume", "--out", str(out), "--no-progress"], data=small_data) == 0
    assert "already trained all 2 epochs" in capsys.readouterr().out
    assert metric_rows(out / "metrics.csv") == metric_rows(finished_run / "metrics.csv")


# -- item 9: stale temporary files, plots on an early stop ------------------------------------------

STALE = (".checkpoint.npz.k3j_a9x2.tmp", ".best.npz.0abcdefg.tmp", ".config.json.zzzzzzzz.tmp",
         ".curves.png.a1b2c3d4.tmp")
KEPT = ("notes.tmp", ".checkpoint.npz.tmp", "my.checkpoint.npz.abcdefgh.tmp")


def plant(folder, names):
    for name in names:
        (folder / name).write_bytes(b"partial")


def test_resume_removes_stale_temporary_files(tmp_path, finished_run, small_data, capsys):
    out = copy_run(finished_run, tmp_path)
    plant(out, STALE + KEPT)
    assert main(["--resume", "--out", str(out), "--epochs", "3", "--no-progress"], data=small_data) == 0
    assert "removed 4 temporary file(s) left by an interrupted write" in capsys.readouterr().out
    left = set(os.listdir(out))
    assert not left & set(STALE) and set(KEPT) <= left


def test_a_new_run_removes_stale_temporary_files(tmp_path, small_data):
    out = tmp_path / "run"
    out.mkdir()
    plant(out, STALE[:1] + KEPT[:1])
    assert main(tiny_args(out, epochs=1), data=small_data) == 0
    assert STALE[0] not in os.listdir(out) and KEPT[0] in os.listdir(out)


PLOTS = ("curves.png", "weights.png", "weighted_samples.png")


def test_ctrl_c_draws_the_plots(tmp_path, small_data, capsys):
    def ctrl_c_after_epoch_1(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    out = tmp_path / "cut"
    assert main(tiny_args(out, epochs=3), data=small_data, on_epoch_end=ctrl_c_after_epoch_1) == 130
    for name in PLOTS:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name


@pytest.mark.parametrize("fault", ["non-finite", "run-away"])
@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_a_stopped_run_draws_the_plots(tmp_path, small_data, fault, capsys, monkeypatch):
    """After epoch 1 the classifier's weights are blown up: inf (non-finite logits) or x1e4
    (finite, but the loss stays far above 10 ln K: the run-away guard)."""
    built = capture_model(monkeypatch)

    def break_after_epoch_1(epoch):
        if epoch == 1:
            name, mod, key = [t for t in built[0].named_parameters() if t[2] == "w"][-1]
            if fault == "non-finite":
                mod.params[key][...] = float("inf")
            else:
                mod.params[key] *= 1e4

    out = tmp_path / "stop"
    lr = ["--lr", "1e-6"] if fault == "run-away" else []
    assert main(tiny_args(out, *lr, epochs=3), data=small_data, on_epoch_end=break_after_epoch_1) == 1
    err = capsys.readouterr().err
    assert ("diverged" if fault == "non-finite" else "ran away") in err and "at epoch 2" in err
    assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == [1]
    for name in PLOTS:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
