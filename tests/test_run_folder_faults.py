"""train_cifar.py under faults and slips (issue 19, items 7-11): options that do nothing, the
environment's switches, a full disk or a file-size limit while saving, SIGTERM, damaged or foreign
checkpoints, a lost or damaged metrics.csv, and the lock on the run folder."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from tinyba2m.training.cli import main
from test_cli_robustness import no_work, one_line_error, refused  # noqa: F401 (no_work: a fixture)
from test_train_cli import tiny_args

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
    ("TINYBA2M_BACKEND", "bogus", "TINYBA2M_BACKEND='bogus' is not a backend: choose one of numpy, cupy"),
    ("TINYBA2M_CHECK_FINITE", "maybe", "TINYBA2M_CHECK_FINITE='maybe' is not understood: use 1, true, yes, on"),
])
def test_an_unknown_environment_value_is_one_line(name, value, message, tmp_path):
    env = {name: value}
    imported = subprocess.run([sys.executable, "-c", "import tinyba2m.training; print('imported')"],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
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
