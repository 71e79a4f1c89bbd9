"""train_cifar.py under faults and slips (issue 19, items 7-11): options that do nothing, the
environment's switches, a full disk or a file-size limit while saving, SIGTERM, damaged or foreign
checkpoints, a lost or damaged metrics.csv, and the lock on the run folder."""
import errno
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tinyba2m import backend
from tinyba2m.attention.ba2m import EVAL_WEIGHTINGS
from tinyba2m.training import load_checkpoint, read_rows, save_checkpoint
from tinyba2m.training import trainer as trainer_module
from tinyba2m.training.cli import main
from tinyba2m.training.folders import remove_stale_temp_files, run_folder_lock
from test_cli_robustness import no_work, one_line_error, refused  # noqa: F401 (no_work: a fixture)
from test_train_cli import metric_rows, tiny_args

try:
    import resource
except ImportError:  # Windows
    resource = None

ROOT = pathlib.Path(__file__).resolve().parents[1]


def script(*argv, env=None, **kw):
    """train_cifar.py in a fresh interpreter: (exit status, stdout, stderr)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run([sys.executable, str(ROOT / "train_cifar.py"), *argv], capture_output=True, text=True,
                       cwd=ROOT, env=environ, timeout=300, **kw)
    return p.returncode, p.stdout, p.stderr


# -- item 11: options that do nothing --------------------------------------------------------------

INACTIVE = [
    (["--attention", "none", "--ba2m-temperature", "2"], "--ba2m-temperature has no effect in this run: it is a BA²M "
                                                          "option and --attention is none"),
    (["--attention", "se", "--ba2m-sar", "none"], "--ba2m-sar has no effect in this run: it is a BA²M option and "
                                                  "--attention is se"),
    (["--attention", "se", "--ba2m-normalisation", "sigmoid"], "--ba2m-normalisation has no effect"),
    (["--attention", "none", "--ba2m-placement", "every"], "--ba2m-placement has no effect in this run: it places "
                                                           "the attention and --attention is none"),
    (["--focal-gamma", "1"], "--focal-gamma has no effect in this run: it is the focal loss's parameter and --loss "
                             "is ce"),
    (["--loss", "ce", "--focal-gamma", "2"], "--focal-gamma has no effect"),
    (["--data-dir", "/tmp"], "--data-dir has no effect in this run: only --dataset cifar100 reads it and --dataset "
                             "is synthetic"),
    (["--dataset", "digits", "--data-url", "https://example.org/c.tgz"], "--data-url has no effect in this run: only "
                                                                         "--dataset cifar100 reads it and --dataset "
                                                                         "is digits"),
    (["--zero-init-residual"], "--zero-init-residual has no effect in this run: only ResNets have residual branches"),
]


@pytest.mark.parametrize("extra, message", INACTIVE, ids=[" ".join(a) for a, _ in INACTIVE])
def test_an_option_that_does_nothing_is_refused(tmp_path, extra, message, capsys, no_work):
    code, err = refused(tiny_args(tmp_path / "r", *extra), capsys)
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "r").exists()


def test_every_inactive_option_given_is_named(tmp_path, capsys, no_work):
    code, err = refused(tiny_args(tmp_path / "r", "--attention", "none", "--ba2m-temperature", "2", "--focal-gamma",
                                  "1"), capsys)
    line = one_line_error(err)
    assert code == 2 and "--ba2m-temperature has no effect" in line and "--focal-gamma has no effect" in line


def test_the_defaults_of_inactive_options_are_not_refused_and_recorded_as_null(tmp_path, small_data):
    out = tmp_path / "r"
    assert main(tiny_args(out, "--attention", "none", epochs=1), data=small_data) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["inactive_options"] == ["ba2m_normalisation", "ba2m_placement", "ba2m_sar", "ba2m_temperature",
                                          "data_dir", "data_url", "focal_gamma", "zero_init_residual"]
    assert all(config[k] is None for k in config["inactive_options"])
    assert config["attention"] == "none" and config["loss"] == "ce" and config["lr"] == 0.05


def test_active_options_are_accepted_and_recorded(tmp_path, small_data):
    out = tmp_path / "r"
    assert main(tiny_args(out, "--loss", "focal", "--focal-gamma", "1.5", "--ba2m-temperature", "2", epochs=1),
                data=small_data) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["focal_gamma"] == 1.5 and config["ba2m_temperature"] == 2.0
    assert "focal_gamma" not in config["inactive_options"] and "ba2m_temperature" not in config["inactive_options"]


def test_resume_and_eval_only_refuse_options_that_do_nothing(finished_run, small_data, tmp_path, capsys, no_work):
    code, err = refused(["--resume", "--out", str(finished_run), "--data-dir", str(tmp_path)], capsys, data=small_data)
    assert code == 2 and "--data-dir has no effect" in one_line_error(err)
    code, err = refused(["--eval-only", "--checkpoint", str(finished_run / "best.npz"), "--lr", "0.1"], capsys,
                        data=small_data)
    assert code == 2 and "--lr has no effect in this run: --eval-only evaluates the checkpoint" in one_line_error(err)


def test_help_says_options_that_do_nothing_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "options that do nothing in a run are refused" in " ".join(capsys.readouterr().out.split())


# -- item 10: the environment's switches -----------------------------------------------------------

@pytest.mark.parametrize("name, value, message", [
    ("TINYBA2M_BACKEND", "bogus", f"TINYBA2M_BACKEND='bogus' is not a backend: choose one of "
                                  f"{', '.join(backend.BACKENDS)}"),
    ("TINYBA2M_CHECK_FINITE", "maybe", "TINYBA2M_CHECK_FINITE='maybe' is not understood: use 1, true, yes, on"),
])
def test_an_unknown_environment_value_is_one_line(name, value, message, tmp_path):
    env = {name: value}
    imported = subprocess.run([sys.executable, "-c", "import tinyba2m.training; print('imported')"], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert imported.returncode == 0 and imported.stdout == "imported\n"
    assert len(imported.stderr.splitlines()) == 1 and message in imported.stderr, imported.stderr
    code, out, err = script("--epochs", "1", "--out", str(tmp_path / "r"), env=env)
    assert code == 2 and err == f"train_cifar.py: error: {message}" + err.split(message, 1)[1], err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_an_explicit_backend_overrides_an_unknown_environment_value(monkeypatch, tmp_path, small_data):
    monkeypatch.setenv("TINYBA2M_BACKEND", "bogus")
    assert main(tiny_args(tmp_path / "r", "--backend", "numpy", epochs=1), data=small_data) == 0


@pytest.mark.parametrize("value, on", [("1", True), ("yes", True), ("TRUE", True), (" On ", True), ("0", False),
                                       ("no", False), ("False", False), ("off", False), ("", False)])
def test_check_finite_takes_the_usual_spellings(monkeypatch, value, on):
    from tinyba2m.ops.validation import env_check_finite
    monkeypatch.setenv("TINYBA2M_CHECK_FINITE", value)
    assert env_check_finite() is on


def test_check_finite_from_the_environment_turns_the_checks_on():
    probe = ("from tinyba2m.ops import validation; print(validation._check_finite)")
    for value, shown in (("yes", "True"), ("off", "False")):
        p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "TINYBA2M_CHECK_FINITE": value})
        assert p.stdout.strip() == shown and p.stderr == ""


# -- item 10: a file that cannot be written; SIGTERM ------------------------------------------------

def test_a_full_disk_while_saving_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path, small_data, capsys,
                                                                                monkeypatch):
    out = tmp_path / "r"

    def disk_full_after_epoch_1(epoch):
        if epoch == 1:
            def no_space(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(backend, "save_npz", no_space)

    code = main(tiny_args(out, epochs=3), data=small_data, on_epoch_end=disk_full_after_epoch_1)
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: could not write {out}/") and "No space left on device (ENOSPC)" in err
    assert f"the last good checkpoint (epoch 1) is kept in {out / 'checkpoint.npz'}" in err
    assert f"python train_cifar.py --resume --out {out}" in err
    assert load_checkpoint(out / "checkpoint.npz")[0]["epoch"] == 1
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")] and not (out / "run.lock").exists()
    monkeypatch.undo()
    assert main(["--resume", "--out", str(out), "--no-progress"], data=small_data) == 0
    assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == [1, 2, 3]


@pytest.mark.skipif(resource is None, reason="needs resource.setrlimit (POSIX)")
def test_a_file_size_limit_while_saving_is_one_line(tmp_path):
    """A real EFBIG: extending a finished run under a 1 KiB file-size limit fails on config.json."""
    out = tmp_path / "r"
    assert main(tiny_args(out, "--subset", "64", epochs=2)) == 0   # the data train_cifar.py itself loads
    before = (out / "checkpoint.npz").read_bytes()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))

    code, _, err = script("--resume", "--out", str(out), "--epochs", "3", "--no-progress", preexec_fn=limit)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"error: could not write {out / 'config.json'}: File too large (EFBIG); the last good checkpoint " \
           f"(epoch 2) is kept in {out / 'checkpoint.npz'}" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_sigterm_saves_draws_the_plots_and_exits_143(tmp_path):
    out = tmp_path / "r"
    p = subprocess.Popen([sys.executable, str(ROOT / "train_cifar.py"), "--subset", "64", "--batch-size", "32",
                          "--epochs", "200", "--no-progress", "--out", str(out)], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for line in p.stdout:
            if line.startswith("epoch   1/200"):
                break
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 143, err
    assert "terminated (SIGTERM) during epoch" in err and f"python train_cifar.py --resume --out {out}" in err
    assert load_checkpoint(out / "checkpoint.npz")[0]["epoch"] >= 1
    assert all((out / name).is_file() for name in ("curves.png", "weights.png", "weighted_samples.png"))
    assert not (out / "run.lock").exists()


# -- item 8: damaged or foreign checkpoints -------------------------------------------------------

def damage(path):
    """Flip bytes in the middle of ``path`` (a zip member's data: the CRC check fails)."""
    blob = bytearray(path.read_bytes())
    mid = len(blob) // 2
    blob[mid:mid + 16] = bytes(b ^ 0xFF for b in blob[mid:mid + 16])
    path.write_bytes(bytes(blob))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_damaged_checkpoint_names_the_intact_best_and_how_to_continue(tmp_path, finished_run, small_data, capsys):
    out = tmp_path / "r"
    shutil.copytree(finished_run, out)
    best_epoch = load_checkpoint(out / "best.npz")[0]["epoch"]
    damage(out / "checkpoint.npz")
    code, err = refused(["--resume", "--out", str(out), "--epochs", "3", "--no-progress"], capsys, data=small_data)
    line = one_line_error(err)
    assert code == 2 and "Bad CRC-32" in line
    assert f"The intact {out / 'best.npz'} holds epoch {best_epoch}: to continue from it, run cp {out / 'best.npz'} " \
           f"{out / 'checkpoint.npz'} and then --resume again" in line
    shutil.copyfile(out / "best.npz", out / "checkpoint.npz")  # what the line says
    assert main(["--resume", "--out", str(out), "--epochs", "3", "--no-progress"], data=small_data) == 0
    assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == [1, 2, 3]


def test_a_damaged_checkpoint_and_best_say_so(tmp_path, finished_run, small_data, capsys):
    out = tmp_path / "r"
    shutil.copytree(finished_run, out)
    damage(out / "checkpoint.npz")
    truncate(out / "best.npz")
    code, err = refused(["--resume", "--out", str(out), "--no-progress"], capsys, data=small_data)
    assert code == 2 and "Its best.npz is no help" in one_line_error(err) and "start a new run" in err


def scripted_top1(top1_by_epoch):
    """A stand-in for the test evaluation: population top-1 from ``top1_by_epoch``, all else fixed."""
    def columns(model, data, config, epoch):
        return {f"test_{k}_{mode}": (top1_by_epoch[epoch] if k == "top1" else 0.5) for mode in EVAL_WEIGHTINGS
                for k in ("loss", "top1", "top5")}
    return columns


def test_a_truncated_best_is_resaved_from_the_checkpoint_of_the_same_epoch(tmp_path, small_data, capsys,
                                                                            monkeypatch):
    monkeypatch.setattr(trainer_module, "_test_columns", scripted_top1({1: 0.3, 2: 0.2, 3: 0.4}))
    out = tmp_path / "r"
    assert main(tiny_args(out, epochs=1), data=small_data) == 0    # best = checkpoint = epoch 1
    truncate(out / "best.npz")
    capsys.readouterr()
    assert main(["--resume", "--out", str(out), "--epochs", "2", "--no-progress"], data=small_data) == 0
    got = capsys.readouterr().out
    assert f"warning: {out / 'best.npz'} is not a tinyba2m checkpoint" in got
    assert "re-saved" in got and "which holds the same epoch (1)" in got
    best = load_checkpoint(out / "best.npz")[0]
    assert (best["epoch"], best["best_top1"]) == (1, 0.3)


def test_a_truncated_best_is_written_again_after_the_next_epoch(tmp_path, small_data, capsys, monkeypatch):
    monkeypatch.setattr(trainer_module, "_test_columns", scripted_top1({1: 0.3, 2: 0.2, 3: 0.25, 4: 0.28}))
    out = tmp_path / "r"
    assert main(tiny_args(out, epochs=2), data=small_data) == 0    # best epoch 1, checkpoint epoch 2
    truncate(out / "best.npz")
    capsys.readouterr()
    assert main(["--resume", "--out", str(out), "--no-progress"], data=small_data) == 0   # finished: nothing to train
    got = capsys.readouterr().out
    assert "the weights of the best epoch 1 (top-1 30.00%) are lost" in got and "The run is finished" in got
    assert main(["--resume", "--out", str(out), "--epochs", "4", "--no-progress"], data=small_data) == 0
    got = capsys.readouterr().out
    assert "best.npz is written again after the next epoch" in got
    best = load_checkpoint(out / "best.npz")[0]
    assert (best["epoch"], best["best_top1"]) == (4, 0.28)   # epoch 3 re-wrote it, epoch 4 improved on 3
    assert load_checkpoint(out / "checkpoint.npz")[0]["best_epoch"] == 4


def test_a_checkpoint_of_another_model_is_refused(tmp_path, finished_run, small_data, capsys):
    other = tmp_path / "se"
    assert main(tiny_args(other, "--attention", "se", epochs=1), data=small_data) == 0
    out = tmp_path / "r"
    shutil.copytree(finished_run, out)
    shutil.copyfile(other / "checkpoint.npz", out / "checkpoint.npz")
    rows = (out / "metrics.csv").read_text()
    capsys.readouterr()
    code, err = refused(["--resume", "--out", str(out), "--epochs", "3", "--no-progress"], capsys, data=small_data)
    line = one_line_error(err)
    assert code == 2 and "belongs to another run" in line
    assert "attention: checkpoint 'se' vs config.json 'ba2m'" in line
    assert (out / "metrics.csv").read_text() == rows


def test_a_checkpoint_whose_parameters_do_not_fit_config_json_is_refused(tmp_path, finished_run, small_data, capsys):
    out = tmp_path / "r"
    shutil.copytree(finished_run, out)
    meta, state, optim = load_checkpoint(out / "checkpoint.npz")
    name = "0.w"                                           # the first convolution's weight
    state[name] = state[name][:1]                          # same architecture keys, another shape
    save_checkpoint(out / "checkpoint.npz", state, optim, meta)
    code, err = refused(["--resume", "--out", str(out), "--epochs", "3", "--no-progress"], capsys, data=small_data)
    line = one_line_error(err)
    assert code == 2 and "belongs to another run" in line and name in line


# -- item 9: a lost or damaged metrics.csv --------------------------------------------------------

def interrupted_run(out, data, epochs=2):
    def ctrl_c_after_epoch_1(epoch):
        if epoch == 1:
            raise KeyboardInterrupt
    assert main(tiny_args(out, epochs=epochs), data=data, on_epoch_end=ctrl_c_after_epoch_1) == 130


def test_a_deleted_metrics_csv_is_rebuilt_from_the_checkpoint(tmp_path, finished_run, small_data, capsys):
    out = tmp_path / "r"
    interrupted_run(out, small_data)
    kept = {name: (out / name).read_text() for name in ("metrics.csv", "ba2m_weights.csv")}
    for name in kept:
        (out / name).unlink()
    capsys.readouterr()
    assert main(["--resume", "--out", str(out), "--no-progress"], data=small_data) == 0
    got = capsys.readouterr().out
    assert f"rebuilt {out / 'metrics.csv'} from the history in checkpoint.npz (epochs 1..1)" in got
    for name, text in kept.items():
        assert (out / name).read_text().startswith(text), name       # the same bytes, then epoch 2
    assert metric_rows(out / "metrics.csv") == metric_rows(finished_run / "metrics.csv")


@pytest.mark.parametrize("how", ["a word for a number", "a row cut short", "an epoch missing", "another header"])
def test_a_malformed_metrics_csv_is_one_line_and_rebuilt_on_request(tmp_path, finished_run, small_data, capsys, how):
    out = tmp_path / "r"
    interrupted_run(out, small_data)
    path = out / "metrics.csv"
    header, row = path.read_text().splitlines()
    broken = {"a word for a number": [header, row.replace(",", ",abc,", 1).replace(",abc,", ",abc", 1)],
              "a row cut short": [header, row[: len(row) // 2]],
              "an epoch missing": [header],
              "another header": [header.replace("train_loss", "loss"), row]}[how]
    path.write_text("\n".join(broken) + "\n")
    capsys.readouterr()
    code, err = refused(["--resume", "--out", str(out), "--no-progress"], capsys, data=small_data)
    line = one_line_error(err)
    assert code == 2 and f"{path} is malformed (" in line and "add --rebuild-metrics" in line
    assert main(["--resume", "--out", str(out), "--no-progress", "--rebuild-metrics"], data=small_data) == 0
    assert "the malformed file is kept as metrics.csv.damaged" in capsys.readouterr().out
    assert (out / "metrics.csv.damaged").read_text() == "\n".join(broken) + "\n"
    assert metric_rows(path) == metric_rows(finished_run / "metrics.csv")


def test_rebuild_metrics_needs_resume(tmp_path, capsys, no_work):
    code, err = refused(tiny_args(tmp_path / "r", "--rebuild-metrics"), capsys)
    assert code == 2 and "--rebuild-metrics is for --resume" in err


# -- item 7: the lock on the run folder -----------------------------------------------------------

HOLD = """
import sys, time
from tinyba2m.training.folders import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock of a folder; yields (folder, process)."""
    folder = tmp_path / "held"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline() == "locked\n"
    yield folder, p
    p.kill()
    p.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_held_run_folder_is_refused_with_one_line_naming_the_holder(holder, finished_run, small_data, capsys):
    folder, p = holder
    code, err = refused(tiny_args(folder, epochs=1), capsys, data=small_data)
    line = one_line_error(err)
    assert code == 2 and f"--out {folder} is in use by another run (PID {p.pid} on {socket.gethostname()}, " \
                         f"started 20" in line and "UTC; lock file" in line and "choose another --out" in line
    assert set(os.listdir(folder)) == {"run.lock"}              # nothing of the refused run
    for name in ("checkpoint.npz", "metrics.csv", "config.json", "best.npz"):
        shutil.copyfile(finished_run / name, folder / name)    # a run in the held folder
    code, err = refused(["--resume", "--out", str(folder), "--no-progress"], capsys, data=small_data)
    assert code == 2 and f"(PID {p.pid} on" in one_line_error(err)
    code, err = refused(["--eval-only", "--checkpoint", str(finished_run / "best.npz"), "--out", str(folder)], capsys,
                        data=small_data)
    assert code == 2 and f"(PID {p.pid} on" in one_line_error(err) and not (folder / "eval.json").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_the_lock_of_a_killed_run_is_taken_over(holder, small_data, capsys):
    folder, p = holder
    p.kill()
    p.wait()
    assert (folder / "run.lock").exists()                       # left behind by the kill
    assert main(tiny_args(folder, epochs=1), data=small_data) == 0
    out = capsys.readouterr().out
    assert f"note: {folder / 'run.lock'} was left by a run that is no longer running (PID {p.pid} on " in out
    assert "taking the folder over" in out
    assert not (folder / "run.lock").exists()                   # released at the end


def test_the_lock_is_reentrant_and_leaves_nothing(tmp_path):
    folder = tmp_path / "a" / "b"
    with run_folder_lock(folder, log=print):
        with run_folder_lock(folder, log=print):                # the CLI and then the Trainer
            assert (folder / "run.lock").is_file()
            record = json.loads((folder / "run.lock").read_text())
            assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert (folder / "run.lock").is_file()
    assert not (tmp_path / "a").exists()                       # the folders it made, left empty, are gone


def test_only_the_temporary_files_of_writers_that_are_gone_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    names = {f".checkpoint.npz.{dead}.abcd1234.tmp": False, f".best.npz.{os.getpid()}.k3j_a9x2.tmp": False,
             f".metrics.csv.{os.getppid()}.zzzzzzzz.tmp": True, ".curves.png.a1b2c3d4.tmp": False}  # True: kept
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    removed = {p.name for p in remove_stale_temp_files(tmp_path)}
    assert removed == {n for n, kept in names.items() if not kept}
    assert os.listdir(tmp_path) == [n for n, kept in names.items() if kept]


RACE = """
import sys, time
from tinyba2m.training.cli import main
from tinyba2m.training.folders import remove_stale_temp_files, run_folder_lock
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
sys.exit(main(sys.argv[2:]))
"""


def race(tmp_path, rounds):
    """``rounds`` times, two train_cifar.py runs started at the same instant on one --out: exactly one
    finishes a complete run and the other is refused with one line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for k in range(rounds):
        out = tmp_path / f"race{k}"
        start = f"{time.time() + 4.0:.3f}"  # both imported by then (the machine may be loaded)
        argv = ["--subset", "32", "--batch-size", "16", "--epochs", "1", "--no-progress", "--attention", "none",
                "--out", str(out)]
        procs = [subprocess.Popen([sys.executable, "-c", RACE, start, *argv], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        (ok, ok_err), (code, err) = results
        assert (ok, code) == (0, 2), results
        assert "Traceback" not in ok_err
        line = one_line_error(err)
        assert "is in use by another run (PID" in line or "already holds a run" in line, line
        assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == [1]
        assert load_checkpoint(out / "checkpoint.npz")[0]["epoch"] == 1 and (out / "best.npz").is_file()
        assert json.loads((out / "config.json").read_text())["epochs"] == 1
        assert not [n for n in os.listdir(out) if n.endswith(".tmp") or n == "run.lock"]


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_two_runs_started_at_once_on_one_folder(tmp_path):
    race(tmp_path, 1)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_two_runs_started_at_once_on_one_folder_ten_times(tmp_path):
    race(tmp_path, 10)


def test_a_checkpoint_without_history_says_what_it_cannot_rebuild(tmp_path, small_data, capsys):
    """A checkpoint written before checkpoints kept the history: a lost metrics.csv restarts (said so),
    a malformed one is one line; the resumed run keeps a history from then on."""
    out = tmp_path / "r"
    interrupted_run(out, small_data, epochs=3)
    meta, state, optim = load_checkpoint(out / "checkpoint.npz")
    del meta["history"]
    save_checkpoint(out / "checkpoint.npz", state, optim, meta)
    (out / "metrics.csv").write_text("epoch,lr\nabc\n")
    capsys.readouterr()
    code, err = refused(["--resume", "--out", str(out), "--no-progress", "--rebuild-metrics"], capsys, data=small_data)
    assert code == 2 and "holds no history to rebuild it from" in one_line_error(err)
    (out / "metrics.csv").unlink()
    assert main(["--resume", "--out", str(out), "--no-progress"], data=small_data) == 0
    assert "cannot rebuild it: it restarts at epoch 2" in capsys.readouterr().out
    assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == [2, 3]
    assert [r["epoch"] for r in load_checkpoint(out / "checkpoint.npz")[0]["history"]["metrics"]] == [2, 3]


def test_a_folder_removed_under_the_probe_or_the_lock_is_made_again(tmp_path, monkeypatch):
    """Two runs started at once on a new folder: one's probe (or clean-up) may remove the empty
    folder the other has just made; the other makes it again instead of failing."""
    from tinyba2m.training import folders
    folder = tmp_path / "new"
    real_mkstemp, real_lock = folders.tempfile.mkstemp, folders._lock_file
    calls = []

    def removed_once(*args, **kwargs):
        if not calls:
            calls.append("mkstemp")
            folder.rmdir()                        # what the other run's clean-up does
        return real_mkstemp(*args, **kwargs)

    def lock_removed_once(path, log):
        if len(calls) == 1:
            calls.append("lock")
            folder.rmdir()
        return real_lock(path, log)

    monkeypatch.setattr(folders.tempfile, "mkstemp", removed_once)
    monkeypatch.setattr(folders, "_lock_file", lock_removed_once)
    assert folders.folder_problem("--out", folder) is None and not folder.exists()
    with folders.run_folder_lock(folder):
        assert (folder / "run.lock").is_file()
    assert calls == ["mkstemp", "lock"] and not folder.exists()


def test_the_temp_file_rule_matches_the_names_atomic_write_makes(tmp_path):
    """The clean-up recognises exactly what atomic_write leaves behind (one rule, in checkpoint.py)."""
    import tempfile
    from tinyba2m.training.checkpoint import TEMP_NAME, TEMP_NAME_BEFORE_PID, temp_prefix
    fd, name = tempfile.mkstemp(prefix=temp_prefix("metrics.csv", 4242), suffix=".tmp", dir=tmp_path)
    os.close(fd)
    base = os.path.basename(name)
    assert TEMP_NAME.match(base)["pid"] == "4242"
    assert TEMP_NAME.match("metrics.csv") is None and TEMP_NAME_BEFORE_PID.match("metrics.csv") is None
