"""Every lesson of the course runs, and every exercise check does what the lesson promises.

- ``test_lesson_runs``: the ```python blocks of ``lessons/NN_*.md`` are executed in order in one
  namespace per lesson (cwd = repository root, NumPy backend). The code is compiled with the
  lesson's file name and padded so that a traceback's line number IS the line of the Markdown
  file; a failure names the lesson, the block number and that line.
- ``test_lesson_exercise``: each ``python -m tinyba2m.gradcheck --target lessons.exercises...``
  command a lesson tells the student to run is run (through the CLI's ``main``): it must FAIL on
  the stub (which raises NotImplementedError) and PASS on ``lessons.solutions`` (same command,
  ``exercises`` replaced by ``solutions``). The same check as a Python call for a notebook,
  ``check("<the same arguments>")`` from ``lessons.check``, reports FAIL on the stub without raising.
- A student's answer: once an exercise file is no longer the stub (its text differs from the hash
  recorded in ``lessons/exercises/stubs.sha256``, see ``lessons/stubs.py``), the same tests check
  the answer instead: it must PASS; a FAIL is reported as the student's, with the checker's table.
  ``test_solved_copies_pass`` copies the solutions over the stubs (all, and half) in a temporary
  copy of the repository and runs these tests there.
- Figures: every ``figures/NAME.png`` a lesson shows is drawn by that lesson's own code (written to a
  temporary folder here) and committed under ``lessons/figures/``. To redraw the committed PNGs:
  ``TINYBA2M_LESSON_FIGURES=lessons/figures python -m pytest -q tests/test_lessons.py -k lesson_runs``.
- Notebook-ready text: shell commands are fenced ``console`` (a ```bash block would become a
  ``%%bash`` cell that runs), and every lesson ends with 2-4 "Check your understanding" questions
  whose answers are in ``lessons/solutions/check_your_understanding.md``.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import shlex
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from lessons.stubs import RECORD, exercise_path, is_stub, recorded
from tinyba2m import backend
from tinyba2m.gradcheck.__main__ import main as gradcheck_main

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
LESSON_FILES = sorted(LESSONS.glob("[0-9][0-9]_*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
CHECK_CMD = re.compile(r"^\s*(python -m tinyba2m\.gradcheck [^\n]*--target lessons\.exercises\.[^\n]*?)\s*$", re.M)
PY_CHECK = re.compile(r"^check\(\"(--target lessons\.exercises\.[^\"]*)\"\)", re.M)
FIGURE = re.compile(r"\]\(figures/([\w-]+)\.png\)")
ANSWERS = LESSONS / "solutions" / "check_your_understanding.md"


def blocks(text: str, lang: str):
    """(first line number of the code, code) for every fenced block of the given language."""
    for m in FENCE.finditer(text):
        if m.group(1) == lang:
            yield text.count("\n", 0, m.start(2)) + 1, m.group(2)


def check_commands(text: str):
    """The gradient-check commands of the exercises, taken from the lesson's ```console (or ```bash) blocks."""
    return [c for lang in ("console", "bash") for _, code in blocks(text, lang) for c in CHECK_CMD.findall(code)]


def python_checks(text: str):
    """The arguments of the ``check("...")`` calls in the lesson's ```python blocks."""
    return [a for _, code in blocks(text, "python") for a in PY_CHECK.findall(code)]


@pytest.fixture
def lesson_env(monkeypatch, tmp_path):
    """Repository root as cwd and on sys.path, NumPy backend, headless matplotlib, figures written to
    a temporary folder (or where TINYBA2M_LESSON_FIGURES already points); restored after."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if not os.environ.get("TINYBA2M_LESSON_FIGURES"):
        monkeypatch.setenv("TINYBA2M_LESSON_FIGURES", str(tmp_path / "figures"))
    previous, state = backend.name, backend.get_rng_state()
    monkeypatch.setattr(backend, "default_dtype", backend.default_dtype)  # restored after
    backend.use_backend("numpy")
    yield
    backend.use_backend(previous)
    backend.set_rng_state(state)


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
    drawn = Path(os.environ["TINYBA2M_LESSON_FIGURES"])
    for name in FIGURE.findall(text):
        assert (drawn / f"{name}.png").is_file(), f"{path.name} shows figures/{name}.png but its code did not draw it"
        assert (LESSONS / "figures" / f"{name}.png").is_file(), f"lessons/figures/{name}.png is not committed"


def target_of(argv) -> str:
    """The ``--target`` of a checker command line."""
    return argv[argv.index("--target") + 1]


def answer_fails(target: str, what: str, out: str) -> str:
    """The message for a student's answer that fails its check (the file is no longer the stub)."""
    path = exercise_path(target).relative_to(ROOT)
    return (f"your answer in {path} FAILs its check ({what}); fix it and run the check again. "
            f"(This file differs from its stub as recorded in {RECORD.relative_to(ROOT)}; if you changed "
            f"the stub itself on purpose, re-record it: python -m lessons.stubs --record)\n{out}")


def skip_exercise_8(text, checks):
    """Exercise 8 has no gradient check to run: its lesson calls check_receptive_field instead."""
    if not checks and "check_receptive_field(" in text:
        pytest.skip("exercise 8 is checked by lessons.check.check_receptive_field (test_receptive_field_check)")


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_lesson_exercise(path, lesson_env, capsys):
    text = path.read_text()
    commands = check_commands(text)
    skip_exercise_8(text, commands)
    assert commands, f"{path.name} tells the student no `python -m tinyba2m.gradcheck --target lessons.exercises...` command"
    for cmd in commands:
        argv = shlex.split(cmd)[3:]
        status = gradcheck_main(argv)
        out = capsys.readouterr().out
        if is_stub(target_of(argv)):
            assert status == 1, f"{cmd!r} passed on the stub"
            assert "FAIL" in out and "NotImplementedError" in out, f"{cmd!r} on the stub:\n{out}"
        else:                                     # the student's answer: it must pass
            assert status == 0, answer_fails(target_of(argv), cmd, out)
        solution = [a.replace("lessons.exercises.", "lessons.solutions.") for a in argv]
        assert gradcheck_main(solution) == 0, f"{' '.join(solution)} failed on the solution:\n{capsys.readouterr().out}"
        assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_lesson_exercise_as_a_python_call(path, lesson_env, capsys):
    """The notebook form of each check: the same arguments; FAIL on the stub without raising (on a
    student's answer: PASS), PASS on the solution."""
    from lessons.check import check

    text = path.read_text()
    calls = python_checks(text)
    skip_exercise_8(text, calls)
    assert calls, f"{path.name} has no check(\"--target lessons.exercises...\") call for the notebook"
    assert sorted(calls) == sorted(c.split(" ", 3)[3] for c in check_commands(text)), \
        f"{path.name}: the check() calls and the console commands differ"
    for args in calls:
        result = check(args)
        out = capsys.readouterr().out
        if is_stub(target_of(shlex.split(args))):
            assert result is False
            assert "FAIL" in out and "NotImplementedError" in out, out
        else:
            assert result is True, answer_fails(target_of(shlex.split(args)), f'check("{args}")', out)
        assert check(args.replace("lessons.exercises.", "lessons.solutions.")) is True, capsys.readouterr().out


def test_notebook_check_reports_a_usage_error_without_raising(lesson_env, capsys):
    from lessons.check import check

    assert check("--target lessons.exercises.ex03_leaky_relu:leaky_relu_forward") is False   # no --shapes
    assert "FAILED" in capsys.readouterr().out


def test_softplus_probe_catches_the_naive_formula(lesson_env, tmp_path, monkeypatch, capsys):
    """Exercise 2's large-x probe: the stub and log(1 + exp(x)) FAIL, the stable solution PASSes."""
    from lessons.check import check_values

    text = (LESSONS / "02_gradient_checking.md").read_text()
    probe = re.search(r"^check_values\((.*?)\)$", text, re.S | re.M)
    assert probe, "lesson 2 has no check_values(...) probe"
    naive = tmp_path / "naive_softplus.py"
    naive.write_text("import numpy as np\n"
                     "def softplus_forward(x):\n    return np.log(1 + np.exp(x)), x\n"
                     "def softplus_backward(dout, x):\n    return dout * np.exp(x) / (1 + np.exp(x))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace = {"check_values": check_values, "np": __import__("numpy")}
    call = "check_values(" + probe.group(1) + ")"
    result = eval(call, namespace)                                       # the stub, or the student's answer
    if is_stub("ex02_softplus"):
        assert result is False, "the stub passed the probe"
    else:
        assert result is True, answer_fails("ex02_softplus", "check_values", capsys.readouterr().out)
    assert eval(call.replace("lessons.exercises.ex02_softplus", "lessons.solutions.ex02_softplus"), namespace) is True
    assert eval(call.replace("lessons.exercises.ex02_softplus", "naive_softplus"), namespace) is False
    out = capsys.readouterr().out
    assert "FAIL forward of naive_softplus" in out and "FAIL backward of naive_softplus" in out, out


def test_receptive_field_check(lesson_env, tmp_path, monkeypatch, capsys):
    """Exercise 8: the stub and the 'extent' answer (the full square) FAIL, the backward-pass solution
    PASSes, the lesson's console command does so as typed, and the reference agrees with lesson 8:
    one dilation-4 layer on 8x8 reaches 4 of 64 pixels."""
    from lessons.check import RECEPTIVE_FIELD_CASES, check_receptive_field, reachable

    assert len(reachable((4,), 8)) == 4 and len(reachable((4,), 11)) == 9 and len(reachable((1, 1), 9)) == 25
    mine = check_receptive_field("lessons.exercises.ex08_receptive_field:receptive_field")
    out = capsys.readouterr().out
    if is_stub("ex08_receptive_field"):
        assert mine is False and "NotImplementedError" in out, out
    else:
        assert mine is True, answer_fails("ex08_receptive_field", "check_receptive_field", out)
    assert check_receptive_field("lessons.solutions.ex08_receptive_field:receptive_field") is True
    (tmp_path / "extent_rf.py").write_text(
        "def receptive_field(dilations, size):\n"
        "    r, c = sum(dilations), size // 2\n"
        "    return {(i, j) for i in range(size) for j in range(size) if abs(i - c) <= r and abs(j - c) <= r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert check_receptive_field("extent_rf:receptive_field") is False
    text = (LESSONS / "08_local_spatial_attention.md").read_text()
    cmd = next(c for _, code in blocks(text, "console") for c in code.splitlines() if "check_receptive_field" in c)
    cmd = cmd.replace("lessons.exercises.", "lessons.solutions.")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TINYBA2M_BACKEND")}
    run = subprocess.run([sys.executable, *shlex.split(cmd)[1:]], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.count("PASS") == len(RECEPTIVE_FIELD_CASES) and "FAIL" not in run.stdout, run.stdout + run.stderr


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_lesson_is_notebook_ready(path):
    """Shell commands are fenced ```console (not run in a notebook); code cells install nothing and
    run no test suite; the lesson ends with 2-4 questions answered in the solutions."""
    text = path.read_text()
    assert not list(blocks(text, "bash")), f"{path.name}: fence shell commands as ```console, not ```bash"
    for _, code in blocks(text, "python"):
        runs = re.search(r"^\s*[!%]|os\.system\(|subprocess|pytest\.main|pip\.main|^\s*import pip", code, re.M)
        assert not runs, f"{path.name}: a code cell runs a shell command, the test suite or pip: {runs.group(0)!r}"
    section = text.split("## Check your understanding", 1)
    assert len(section) == 2, f"{path.name} has no '## Check your understanding' section"
    questions = re.findall(r"^(\d+)\. ", section[1], re.M)
    assert 2 <= len(questions) <= 4, f"{path.name}: {len(questions)} questions"
    answers = ANSWERS.read_text().split(f"## {path.stem}", 1)
    assert len(answers) == 2, f"{ANSWERS.name} has no '## {path.stem}' section"
    answered = re.findall(r"^(\d+)\. ", answers[1].split("\n## ", 1)[0], re.M)
    assert answered == questions, f"{path.name}: questions {questions}, answers {answered}"


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
    assert sorted(recorded()) == stubs, f"{RECORD.name} must record exactly the stubs: python -m lessons.stubs --record"


# -- a student's own work does not break the suite (issue 19, item 5) -------------------------------
STUB_DEPENDENT = "(exercise or python_call or softplus or receptive or every_exercise) and not solved_copies"
COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints",
                                     "runs", "*.egg-info")


def solved_copy(dest: Path, solved) -> Path:
    """A copy of the repository in ``dest`` with the solutions of the exercises numbered in
    ``solved`` copied over their stubs (what a student's finished work looks like)."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE)
    for path in sorted((dest / "lessons" / "solutions").glob("ex[0-9][0-9]_*.py")):
        if int(path.name[2:4]) in solved:
            shutil.copyfile(path, dest / "lessons" / "exercises" / path.name)
    return dest


def run_tests_in(copy: Path, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("TINYBA2M_BACKEND",)}
    env["PYTHONPATH"] = str(copy)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("solved", [range(1, 14), range(1, 14, 2)], ids=["all 13 solved", "half solved"])
def test_solved_copies_pass(tmp_path, solved):
    """All 13 or every other exercise solved (the solutions copied over the stubs, in a copy of the
    repository): every test that looks at the exercises passes there; half solved, lesson 3 (solved)
    also runs as a notebook (skipped without jupytext)."""
    copy = solved_copy(tmp_path / "repo", set(solved))
    notebook = ["tests/test_notebooks.py", "-k", f"({STUB_DEPENDENT}) or (as_a_notebook and 03_linear)"] \
        if len(solved) < 13 else ["-k", STUB_DEPENDENT]    # one notebook run is enough (about 15 s)
    run = run_tests_in(copy, "-rA", "tests/test_lessons.py", *notebook)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " failed" not in run.stdout, run.stdout[-2000:]
    for lesson in ("01_arrays_and_backend", "02_gradient_checking", "13_gpu_with_cupy"):   # both solved and stubs were checked
        assert f"PASSED tests/test_lessons.py::test_lesson_exercise[{lesson}]" in run.stdout, run.stdout[-4000:]
    if len(solved) < 13 and importlib.util.find_spec("jupytext") and importlib.util.find_spec("nbclient"):
        assert "PASSED tests/test_notebooks.py::test_lesson_runs_as_a_notebook[03_linear_relu_softmax_ce]" in run.stdout


def test_a_wrong_answer_is_reported_as_the_students(tmp_path):
    """A wrong answer fails its exercise's tests with the student's message, not 'passed on the stub'."""
    copy = solved_copy(tmp_path / "repo", {3})
    answer = copy / "lessons" / "exercises" / "ex03_leaky_relu.py"
    answer.write_text(answer.read_text().replace("return dout * cache", "return dout * cache * 1.01"))
    run = run_tests_in(copy, "tests/test_lessons.py", "--tb=short", "-k", "03_linear and (exercise or python_call)")
    assert run.returncode == 1, run.stdout[-4000:]
    assert "2 failed" in run.stdout and "passed on the stub" not in run.stdout, run.stdout[-4000:]
    assert "your answer in lessons/exercises/ex03_leaky_relu.py FAILs its check" in run.stdout, run.stdout[-4000:]
    assert re.search(r"lessons\.exercises\.ex03_leaky_relu:leaky_relu_forward +\S+ +1e-06 +FAIL +x=", run.stdout), run.stdout[-4000:]


def test_stub_record_tells_a_stub_from_an_answer(tmp_path, monkeypatch, capsys):
    """lessons/stubs.py: a recorded file is the stub, also with Windows line endings; one edit makes it an answer."""
    import lessons.stubs as stubs

    folder = tmp_path / "exercises"
    folder.mkdir()
    stub = folder / "ex03_leaky_relu.py"
    stub.write_text('def f(x):\n    raise NotImplementedError("Exercise 3")\n')
    monkeypatch.setattr(stubs, "EXERCISES", folder)
    monkeypatch.setattr(stubs, "RECORD", folder / "stubs.sha256")
    assert stubs.main(["--record"]) == 0
    assert (folder / "stubs.sha256").read_text().endswith("  ex03_leaky_relu.py\n")
    assert stubs.is_stub("lessons.exercises.ex03_leaky_relu:f") and stubs.is_stub("ex03_leaky_relu.py")
    stub.write_bytes(stub.read_bytes().replace(b"\n", b"\r\n"))          # a Windows checkout
    assert stubs.is_stub("ex03_leaky_relu")
    stub.write_text('def f(x):\n    return x\n')                         # the student's answer
    assert not stubs.is_stub("ex03_leaky_relu")
    assert stubs.main([]) == 0 and re.search(r"ex03_leaky_relu.py +edited \(your answer\)", capsys.readouterr().out)
    with pytest.raises(ValueError, match="ex04_conv1d.py has no stub hash"):
        stubs.is_stub("ex04_conv1d")
