"""``python -m tinyba2m.study paper``: the quick grid end to end, the plan and its time estimate,
resuming after Ctrl-C, the summary's arithmetic, bad options."""
import math
import subprocess
import sys

import pytest

from tinyba2m.study import paper

TINY = {"n_train": 64, "n_test": 32, "num_classes": 10, "image_size": 12}


def test_quick_grid_runs_end_to_end(tmp_path, capsys):
    assert paper.main(["--quick", "--out", str(tmp_path)]) == 0
    cells = paper.read_records(tmp_path / "cells.csv")
    runs = len(paper.QUICK["models"]) * len(paper.METHODS) * len(paper.QUICK["seeds"])
    assert len(cells) == runs and {c["method"] for c in cells} == set(paper.METHODS)
    assert all(c["dataset"] == "synthetic" and not math.isnan(float(c["top1"])) for c in cells)
    out = capsys.readouterr().out
    assert f"= {runs} runs" in out and "estimated time:" in out
    summary = (tmp_path / "summary.md").read_text()
    for method in paper.METHODS:
        assert f"| {method} | {len(paper.QUICK['seeds'])} |" in summary
    assert (tmp_path / "summary.png").stat().st_size > 0
    assert (tmp_path / "runs").is_dir()


@pytest.fixture
def tiny_quick(monkeypatch):
    monkeypatch.setitem(paper.QUICK, "synthetic", TINY)
    monkeypatch.setitem(paper.QUICK, "methods", ("none", "cbam"))
    monkeypatch.setitem(paper.QUICK, "seeds", (0, 1))


def test_plan_only_prints_the_runs_and_an_estimate_and_trains_nothing(tmp_path, capsys, tiny_quick):
    assert paper.main(["--quick", "--plan-only", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 models x 2 methods x 2 seeds = 4 runs" in out and "4 to train" in out
    assert "estimated time:" in out and "resnet20/cbam" in out
    assert not (tmp_path / "cells.csv").exists()


def test_a_rerun_resumes_after_ctrl_c(tmp_path, monkeypatch, capsys, tiny_quick):
    real, trained = paper.run_cell, []

    def interrupt_third(cell, *args):
        if len(trained) == 2:
            raise KeyboardInterrupt
        trained.append((cell["method"], cell["seed"]))
        return real(cell, *args)

    monkeypatch.setattr(paper, "run_cell", interrupt_third)
    assert paper.main(["--quick", "--out", str(tmp_path)]) == 130
    assert "Rerun the same command to resume" in capsys.readouterr().err
    assert len(paper.read_records(tmp_path / "cells.csv")) == 2            # the finished runs are kept
    monkeypatch.setattr(paper, "run_cell", lambda cell, *args: trained.append((cell["method"], cell["seed"]))
                        or real(cell, *args))
    assert paper.main(["--quick", "--out", str(tmp_path)]) == 0
    assert trained == [("none", 0), ("none", 1), ("cbam", 0), ("cbam", 1)]   # nothing trained twice
    assert "2 to train (2 already in cells.csv)" in capsys.readouterr().out
    assert len(paper.read_records(tmp_path / "cells.csv")) == 4


def test_summary_gives_mean_std_and_the_difference_from_none():
    def cell(method, seed, top1, diverged=0):
        return {"dataset": "cifar100", "epochs": "200", "model": "resnet20", "method": method, "seed": seed,
                "top1": top1, "best_top1": top1, "diverged": diverged}
    cells = [cell("none", 0, 60.0), cell("none", 1, 62.0), cell("ba2m", 0, 63.0), cell("ba2m", 1, 65.0),
             cell("ba2m", 2, "", 1)]
    text = paper.summarise(cells)
    assert "| none | 2 | 61.00 ± 1.41 |" in text
    se = math.sqrt(2 / 2 + 2 / 2)
    assert f"| ba2m | 3 | 64.00 ± 1.41 | 64.00 ± 1.41 | +3.00 ± {se:.2f} | 1 |" in text


@pytest.mark.parametrize("argv,message", [(["--methods", "none,eca"], "--methods: unknown eca"),
                                          (["--models", "resnet18"], "--models: unknown resnet18"),
                                          (["--epochs", "0"], "--epochs must be at least 1")])
def test_bad_options_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        paper.main(argv)
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_the_command_line_names_the_paper_study():
    out = subprocess.run([sys.executable, "-m", "tinyba2m.study", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "paper" in out.stdout
