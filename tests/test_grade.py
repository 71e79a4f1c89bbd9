"""``python -m tinyba2m.grade``: a made-up class, built from the course's own solutions in a temporary
folder, gets the right status for every student and exercise, in bounded time, and leaves the
course and the submissions as they were. Also: the grader's table of checks is the lessons' own."""
import ast
import csv
import hashlib
import pathlib
import re
import os
import shlex
import signal
import sys
import time

import numpy as np
import pytest

from lessons import stubs
from lessons.grading import EXERCISES, SOFTPLUS_PROBE
from tinyba2m.grade.__main__ import main
from tinyba2m.grade.runner import BoundedOutput, Limits, child_env, run_bounded

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "lessons" / "solutions"
GRADED = "ex01,ex02,ex03,ex07,ex08"       # a few exercises: one of each kind of check
NAMES = ["ex01_row_scale", "ex02_softplus", "ex03_leaky_relu", "ex07_channel_gate", "ex08_receptive_field"]


def solution(name):
    return (SOLUTIONS / f"{name}.py").read_text()


def edit(name, old, new):
    text = solution(name)
    assert old in text, f"{name}: {old!r} not in the solution any more"
    return text.replace(old, new)


def stub(name):
    """The course's stub of exercise ``name``. Where it has been answered in place (a student's
    checkout), the stub rebuilt from the solution, every function raising NotImplementedError, so
    the made-up class still has a student who handed in the stubs."""
    if stubs.is_stub(name):
        return (ROOT / "lessons" / "exercises" / f"{name}.py").read_text()
    tree = ast.parse(solution(name))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            node.body = ast.parse(f'raise NotImplementedError("Exercise: write {node.name}")').body
    return ast.unparse(tree) + "\n"


SYNTAX = edit("ex03_leaky_relu", "return x * slope, slope", "return x * slope slope")
SYNTAX_LINE = SYNTAX.splitlines().index("    return x * slope slope") + 1

# student -> {file name: text}
CLASS = {
    "ada_all": {f"{n}.py": solution(n) for n in NAMES},
    "bob_sign": {"ex03_leaky_relu.py": edit("ex03_leaky_relu", "return dout * cache", "return -dout * cache"),
                 "ex08_receptive_field.py": "def receptive_field(dilations, size):\n"   # the full square: the extent
                                            "    return {(i, j) for i in range(size) for j in range(size)}\n"},
    "cy_nan": {"ex01_row_scale.py": edit("ex01_row_scale", "(dout * x).sum(axis=1)", "(dout * x).sum(axis=1) * float('nan')"),
               "ex03_leaky_relu.py": edit("ex03_leaky_relu", "def leaky_relu_forward", "def leaky_forward")},
    "di_syntax": {"ex03_leaky_relu.py": SYNTAX},
    "ed_missing": {"ex01_rowscale.py": solution("ex01_row_scale"), "ex03_leaky_relu.py": solution("ex03_leaky_relu")},
    "flo_loud": {"ex03_leaky_relu.py": 'print("spam " * 200_000)\n' + solution("ex03_leaky_relu")},   # a megabyte
    "gus_peeks": {"ex03_leaky_relu.py": "import ex07_channel_gate  # only ada_all has it\n" + solution("ex03_leaky_relu")},
    "hal_hog": {"ex03_leaky_relu.py": edit("ex03_leaky_relu", "    xp = backend.array_module(x)\n",
                                           "    hog = bytearray(64 << 30)\n    xp = backend.array_module(x)\n")},
    "jo_stub": {"ex03_leaky_relu.py": stub("ex03_leaky_relu"), "ex08_receptive_field.py": stub("ex08_receptive_field")},
}
HANG = {"ivy_hang": {"ex03_leaky_relu.py": edit("ex03_leaky_relu", "    xp = backend.array_module(x)\n",
                                                "    while True:\n        pass\n")}}

M, P, F, E = "MISSING", "PASS", "FAIL", "ERROR"
EXPECTED = {  # ex01 ex02 ex03 ex07 ex08
    "ada_all": [P, P, P, P, P],
    "bob_sign": [M, M, F, M, F],
    "cy_nan": [F, M, E, M, M],
    "di_syntax": [M, M, E, M, M],
    "ed_missing": [M, M, P, M, M],
    "flo_loud": [M, M, P, M, M],
    "gus_peeks": [M, M, E, M, M],
    "hal_hog": [M, M, E, M, M],
    "jo_stub": [M, M, E, M, E],
}


def make_class(folder, students):
    for student, files in students.items():
        (folder / student).mkdir(parents=True)
        for name, text in files.items():
            (folder / student / name).write_text(text)
    return folder


def snapshot(folder):
    """path -> content hash of every file under ``folder`` (bytecode caches left out)."""
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, {(r["student"], r["exercise"]): r for r in rows}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class graded once: (folder, csv rows by (student, exercise), printed summary, course before, after)."""
    tmp = tmp_path_factory.mktemp("class")
    subs = make_class(tmp / "submissions", CLASS)
    course_before, subs_before = snapshot(ROOT / "lessons"), snapshot(subs)
    out = tmp / "out" / "grades.csv"
    import io
    from contextlib import redirect_stdout
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main([str(subs), "--exercises", GRADED, "--timeout", "120", "--out", str(out)]) == 0
    rows, by = read_csv(out)
    return dict(tmp=tmp, out=out, rows=rows, by=by, printed=printed.getvalue(),
                course_same=snapshot(ROOT / "lessons") == course_before, subs_same=snapshot(subs) == subs_before)


def test_every_student_gets_the_right_status(graded):
    assert [list(r) for r in graded["rows"][:1]] == [["student", "exercise", "status", "worst_error", "message"]]
    got = {s: [graded["by"][s, n]["status"] for n in NAMES] for s in EXPECTED}
    assert got == EXPECTED
    assert len(graded["rows"]) == len(EXPECTED) * len(NAMES)


def test_the_messages_and_errors_say_why(graded):
    by = graded["by"]
    assert float(by["ada_all", "ex03_leaky_relu"]["worst_error"]) < 1e-6
    assert by["ada_all", "ex08_receptive_field"]["worst_error"] == ""                 # no gradient in exercise 8
    assert float(by["bob_sign", "ex03_leaky_relu"]["worst_error"]) == pytest.approx(1.0)
    assert "above tolerance" in by["bob_sign", "ex03_leaky_relu"]["message"]
    assert "cases failed" in by["bob_sign", "ex08_receptive_field"]["message"]
    nan = by["cy_nan", "ex01_row_scale"]
    assert nan["worst_error"] == "nan" and "=nan above tolerance" in nan["message"]
    assert "has no attribute 'leaky_relu_forward'" in by["cy_nan", "ex03_leaky_relu"]["message"]
    syntax = by["di_syntax", "ex03_leaky_relu"]["message"]
    assert syntax.startswith(f"ex03_leaky_relu.py:{SYNTAX_LINE}: import raised SyntaxError"), syntax
    assert "ex01_rowscale.py" in by["ed_missing", "ex01_row_scale"]["message"]       # the misnamed file is named
    assert "ex07_channel_gate" in by["gus_peeks", "ex03_leaky_relu"]["message"]      # not another student's file
    for name, line in (("ex03_leaky_relu", "forward"), ("ex08_receptive_field", "run")):
        stub = by["jo_stub", name]["message"]
        assert re.match(rf"{name}\.py:\d+: {line} raised NotImplementedError: Exercise", stub), stub
    if sys.platform.startswith("linux"):
        assert "MemoryError" in by["hal_hog", "ex03_leaky_relu"]["message"]


def test_feedback_files_hold_the_checkers_rows_and_a_flood_is_cut(graded):
    folder = graded["out"].with_name("grades_feedback")
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.txt" for s in CLASS)
    ada = (folder / "ada_all.txt").read_text()
    assert ada.count("worst rel. error") == 4 and ada.count("PASS dilations") == 7   # 4 gradchecks, 7 cases of ex08
    assert "PASS forward of softplus_forward" in ada                                    # exercise 2's large-x probe
    bob = (folder / "bob_sign.txt").read_text()
    assert "FAIL  input0=1.00e+00" in bob or "FAIL  x=1.00e+00" in bob
    loud = folder / "flo_loud.txt"
    assert loud.stat().st_size < 100_000 and "bytes of output cut" in loud.read_text()
    assert "worst rel. error" in loud.read_text()                                       # the table is kept (the tail)


def test_summary_table_and_course_and_submissions_untouched(graded):
    printed = graded["printed"]
    for student, statuses in EXPECTED.items():
        line = next(ln for ln in printed.splitlines() if ln.startswith(student))
        assert line.split()[-1] == f"{statuses.count('PASS')}/5", line
    assert "45 checks (7 PASS, 3 FAIL, 6 ERROR, 0 TIMEOUT, 29 MISSING)" in printed
    assert graded["course_same"], "grading changed a file of lessons/"
    assert graded["subs_same"], "grading changed a file in a student's folder"


def test_a_forward_that_never_returns_costs_its_time_limit(tmp_path):
    subs = make_class(tmp_path / "submissions", HANG)
    start = time.monotonic()
    assert main([str(subs), "--exercises", "ex03", "--timeout", "3", "--out", str(tmp_path / "g.csv")]) == 0
    took = time.monotonic() - start
    _, by = read_csv(tmp_path / "g.csv")
    assert by["ivy_hang", "ex03_leaky_relu"]["status"] == "TIMEOUT"
    assert "3 s" in by["ivy_hang", "ex03_leaky_relu"]["message"]
    assert took < 3 + 5, f"grading a hanging forward with --timeout 3 took {took:.1f} s"


@pytest.mark.parametrize("args, says", [
    (["nowhere"], "not a folder"),
    (["{subs}", "--exercises", "ex99"], "'ex99' is not an exercise"),
    (["{subs}", "--timeout", "0"], "--timeout 0"),
    (["{subs}", "--course", "{subs}"], "no lessons/grading.py"),
    (["{empty}"], "no student folders"),
    (["{subs}", "--out", "{subs}/a/file.txt/grades.csv"], "cannot write the grades"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, args, says):
    subs = make_class(tmp_path / "subs", {"a": {"file.txt": ""}})
    (tmp_path / "empty").mkdir()
    argv = [a.format(subs=subs, empty=tmp_path / "empty") for a in args]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and says in capsys.readouterr().err


def test_bounded_output_keeps_head_and_tail():
    out = BoundedOutput(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        out.add(chunk)
    assert out.text() == "abcde\n[... 16 bytes of output cut ...]\nvwxyz"
    small = BoundedOutput(100)
    small.add(b"hello")
    assert small.text() == "hello"


def lesson_gradcheck_commands():
    """exercise -> the arguments of its lesson's `python -m tinyba2m.gradcheck --target ...` command."""
    found = {}
    for path in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.md")):
        for m in re.finditer(r"^python -m tinyba2m\.gradcheck (--target lessons\.exercises\.(\w+):.*?)\s*$",
                             path.read_text(), re.M):
            found[m.group(2)] = m.group(1)
    return found


def test_the_graders_checks_are_the_lessons_checks():
    stubs = sorted(p.stem for p in (ROOT / "lessons" / "exercises").glob("ex[0-9][0-9]_*.py"))
    assert sorted(EXERCISES) == stubs
    commands = lesson_gradcheck_commands()
    assert {n: e.gradcheck for n, e in EXERCISES.items() if e.gradcheck} == commands
    assert [n for n, e in EXERCISES.items() if not e.gradcheck] == ["ex08_receptive_field"]
    assert EXERCISES["ex08_receptive_field"].own_check is not None


def test_the_softplus_probe_is_lesson_2s():
    text = (ROOT / "lessons" / "02_gradient_checking.md").read_text()
    call = re.search(r"^check_values\((.*?)\)$", text, re.S | re.M).group(1)
    seen = {}
    eval(f"probe({call})", {"np": np, "probe": lambda target, **kw: seen.update(kw)})
    assert seen.keys() == SOFTPLUS_PROBE.keys()
    for k in seen:
        np.testing.assert_array_equal(np.asarray(seen[k]), np.asarray(SOFTPLUS_PROBE[k]))
    assert shlex.split(EXERCISES["ex02_softplus"].gradcheck)[1] == "lessons.exercises.ex02_softplus:softplus_forward"


def test_the_instructors_section_names_only_real_options(capsys):
    section = (ROOT / "lessons" / "README.md").read_text().split("## For instructors", 1)
    assert len(section) == 2, "lessons/README.md has no 'For instructors' section"
    from tinyba2m.gradcheck.__main__ import main as gradcheck_main
    for cli in (main, gradcheck_main):
        with pytest.raises(SystemExit):
            cli(["--help"])
    usage = capsys.readouterr().out
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", section[1])) - {"--network", "--memory", "--pids-limit",
                                                                        "--user", "--read-only", "--tmpfs", "--rm",
                                                                        "--no-cache-dir"}
    assert named and all(opt in usage for opt in named), sorted(o for o in named if o not in usage)


def gone(pid) -> bool:
    """The process has ended (a zombie waiting for its parent counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_what_a_check_leaves_running_is_killed_with_it(tmp_path):
    """A check that starts a long-lived process of its own and returns: that process is killed too."""
    pidfile = tmp_path / "pid"
    code = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))")
    rc, _, timed_out, seconds = run_bounded([sys.executable, "-c", code], str(tmp_path), child_env(str(ROOT)), Limits(30))
    assert rc == 0 and not timed_out and seconds < 20
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid), "the check's own child process survived it"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_in_the_grader_kills_the_running_check(tmp_path):
    """The check runs in a session of its own (the terminal's Ctrl-C does not reach it): the grader kills it."""
    pidfile = tmp_path / "pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"

    def interrupt(*_):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_bounded([sys.executable, "-c", code], str(tmp_path), child_env(str(ROOT)), Limits(30))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert pidfile.exists() and gone(int(pidfile.read_text()))
