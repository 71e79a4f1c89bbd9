"""Every lesson of the course runs, and every exercise check does what the lesson promises.

- ``test_lesson_runs``: the ```python blocks of ``lessons/NN_*.md`` are executed in order in one
  namespace per lesson (cwd = repository root, NumPy backend). The code is compiled with the
  lesson's file name and padded so that a traceback's line number IS the line of the Markdown
  file; a failure names the lesson, the block number and that line.
- ``test_lesson_exercise``: each ``python -m tinyba2m.gradcheck --target lessons.exercises...``
  command a lesson tells the student to run is run (through the CLI's ``main``): it must FAIL on
  the stub (which raises NotImplementedError) and PASS on ``lessons.solutions`` (same command,
  ``exercises`` replaced by ``solutions``).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from tinyba2m import backend
from tinyba2m.gradcheck.__main__ import main as gradcheck_main

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
LESSON_FILES = sorted(LESSONS.glob("[0-9][0-9]_*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
CHECK_CMD = re.compile(r"^\s*(python -m tinyba2m\.gradcheck [^\n]*--target lessons\.exercises\.[^\n]*?)\s*$", re.M)


def blocks(text: str, lang: str):
    """(first line number of the code, code) for every fenced block of the given language."""
    for m in FENCE.finditer(text):
        if m.group(1) == lang:
            yield text.count("\n", 0, m.start(2)) + 1, m.group(2)


def check_commands(text: str):
    """The gradient-check commands of the exercises, taken from the lesson's ```bash blocks."""
    return [c for _, code in blocks(text, "bash") for c in CHECK_CMD.findall(code)]


@pytest.fixture
def lesson_env(monkeypatch):
    """Repository root as cwd and on sys.path, NumPy backend, headless matplotlib; restored after."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    previous, state, dtype = backend.name, backend.get_rng_state(), backend.default_dtype
    backend.use_backend("numpy")
    yield
    backend.use_backend(previous)
    backend.set_rng_state(state)
    backend.set_default_dtype(dtype)


def test_there_are_lessons_and_a_table_of_contents():
    assert LESSON_FILES, "no lessons/NN_*.md found"
    toc = (LESSONS / "README.md").read_text()
    for path in LESSON_FILES:
        assert f"({path.name})" in toc, f"lessons/README.md does not link {path.name}"


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_lesson_runs(path, lesson_env):
    text = path.read_text()
    code_blocks = list(blocks(text, "python"))
    assert code_blocks, f"{path.name} has no python blocks"
    namespace = {"__name__": f"lesson_{path.stem}"}
    for number, (line, code) in enumerate(code_blocks, 1):
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        failure = None
        try:
            exec(compiled, namespace)
        except Exception as exc:  # report where in the Markdown it broke
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
            where = f"line {frames[-1].lineno}" if frames else f"the block starting at line {line}"
            failure = (f"lessons/{path.name}, python block {number} (starts at line {line}), failed at {where}: "
                       f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        if failure:
            pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_lesson_exercise(path, lesson_env, capsys):
    commands = check_commands(path.read_text())
    assert commands, f"{path.name} tells the student no `python -m tinyba2m.gradcheck --target lessons.exercises...` command"
    for cmd in commands:
        argv = shlex.split(cmd)[3:]
        assert gradcheck_main(argv) == 1, f"{cmd!r} passed on the stub"
        out = capsys.readouterr().out
        assert "FAIL" in out and "NotImplementedError" in out, f"{cmd!r} on the stub:\n{out}"
        solution = [a.replace("lessons.exercises.", "lessons.solutions.") for a in argv]
        assert gradcheck_main(solution) == 0, f"{' '.join(solution)} failed on the solution:\n{capsys.readouterr().out}"
        assert "PASS" in capsys.readouterr().out


def test_exercise_command_works_as_typed_from_the_repository_root():
    """The student types the command in the repository root, with no PYTHONPATH."""
    if not LESSON_FILES:
        pytest.skip("no lessons")
    cmd = check_commands(LESSON_FILES[0].read_text())[0].replace("lessons.exercises.", "lessons.solutions.")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TINYBA2M_BACKEND")}
    run = subprocess.run([sys.executable, *shlex.split(cmd)[1:]], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "PASS" in run.stdout, run.stdout + run.stderr


def test_every_exercise_has_a_stub_and_a_solution():
    stubs = sorted(p.name for p in (LESSONS / "exercises").glob("ex[0-9][0-9]_*.py"))
    sols = sorted(p.name for p in (LESSONS / "solutions").glob("ex[0-9][0-9]_*.py"))
    assert stubs == sols
    used = {re.search(r"lessons\.exercises\.(\w+):", c).group(1) + ".py"
            for p in LESSON_FILES for c in check_commands(p.read_text())}
    assert used <= set(stubs), f"lessons name exercises that do not exist: {sorted(used - set(stubs))}"
