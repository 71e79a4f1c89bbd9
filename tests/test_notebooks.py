"""Every lesson opens as a Jupyter notebook and "Run All" runs it top to bottom.

Each ``lessons/NN_*.md`` is converted with jupytext (as Jupyter does when it opens the paired
Markdown) and executed by nbclient in a fresh Python kernel started in the lessons folder (where
Jupyter starts it): an unfinished exercise's check must report FAIL without halting, no cell may
error. Skips cleanly without the ``lessons`` extra (``pip install -e ".[lessons]"``). About 2-5 s
a lesson on 2 cores, so it runs in CI with the extra installed.
"""
from __future__ import annotations

import os

import pytest

from test_lessons import LESSON_FILES, LESSONS

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
    if "check(" in "".join(c.source for c in code):
        assert "FAIL" in outputs, "the exercise check on the stub should have printed FAIL and gone on"
