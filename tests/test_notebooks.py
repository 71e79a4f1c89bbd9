"""Every lesson opens as a Jupyter notebook and "Run All" runs it top to bottom.

Each ``lessons/NN_*.md`` is converted with jupytext (as Jupyter does when it opens the paired
Markdown) and executed by nbclient in a fresh Python kernel started in the lessons folder (where
Jupyter starts it): an unfinished exercise's check must report FAIL without halting, no cell may
error (once the student has written an answer, the file is no longer the stub: then its check
must PASS). Skips cleanly without the ``lessons`` extra (``pip install -e ".[lessons]"``). About 2-5 s
a lesson on 2 cores, so it runs in CI with the extra installed.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from lessons.stubs import is_stub
from test_lessons import LESSON_FILES, LESSONS, answer_fails, python_checks, solved_copy, target_of

jupytext = pytest.importorskip("jupytext", reason='needs the lessons extra: pip install -e ".[lessons]"')
nbclient = pytest.importorskip("nbclient", reason='needs the lessons extra: pip install -e ".[lessons]"')
pytest.importorskip("ipykernel", reason='needs the lessons extra: pip install -e ".[lessons]"')


def test_pairing_keeps_the_markdown_unchanged():
    """A notebook saved from Jupyter is written back to the .md: the round trip must not change a lesson."""
    for path in LESSON_FILES:
        text = path.read_text()
        again = jupytext.writes(jupytext.reads(text, fmt="md"), fmt="md")
        assert again == text, f"{path.name} changes when jupytext writes it back"


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_lesson_runs_as_a_notebook(path, tmp_path, monkeypatch):
    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    assert not [c.source for c in code if c.source.lstrip().startswith("%%")], "a cell runs a shell"
    for var in ("TINYBA2M_BACKEND", "PYTHONPATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TINYBA2M_LESSON_FIGURES", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(LESSONS)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"lessons/{path.name} as a notebook: {exc}", pytrace=False)
    outputs = "".join(o.get("text", "") for c in code for o in c.get("outputs", []) if o.get("output_type") == "stream")
    for args in python_checks(path.read_text()):
        target = target_of(args.split())
        row = next((ln for ln in outputs.splitlines() if ln.startswith(target + " ")), "")
        if is_stub(target):
            assert row.endswith("FAIL") or " FAIL " in row, \
                f"the exercise check on the stub should have printed FAIL and gone on:\n{outputs}"
        else:
            assert " PASS" in row, answer_fails(target, "the notebook's check() cell", outputs)


def test_headless_command_in_the_readme_runs_a_lesson(tmp_path):
    """The command lessons/README.md gives for running a lesson without Jupyter's window (jupytext
    --execute needs --set-kernel python3, else "No kernel found that matches the current python
    executable"), typed in the repository root of a copy: it runs lesson 1 top to bottom and
    writes the notebook with its outputs beside the Markdown."""
    readme = (LESSONS / "README.md").read_text()
    match = re.search(r"^(jupytext --to ipynb --set-kernel python3 --execute) lessons/\S+\.md$", readme, re.M)
    assert match, "lessons/README.md gives no `jupytext --to ipynb --set-kernel python3 --execute lessons/...md` line"
    copy = solved_copy(tmp_path / "repo", set())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TINYBA2M_BACKEND")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")   # the jupytext beside this python
    lesson = "lessons/01_arrays_and_backend.md"
    run = subprocess.run([*shlex.split(match.group(1)), lesson], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    nb = json.loads((copy / lesson).with_suffix(".ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    row = next((ln for ln in text.splitlines() if ln.startswith("lessons.exercises.ex01_row_scale:")), "")
    if is_stub("ex01_row_scale"):      # it ran to the exercise check at the end, which FAILs on the stub
        assert " FAIL " in row and "NotImplementedError" in text, text[-2000:]
    else:                              # ... and PASSes on a student's right answer
        assert " PASS" in row, answer_fails("ex01_row_scale", "the headless notebook run", text[-2000:])
    assert (copy / lesson).read_text() == (LESSONS / "01_arrays_and_backend.md").read_text()
