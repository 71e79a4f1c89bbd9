"""What one grading subprocess runs: ``python -m tinyba2m.grade.child EXERCISE RESULT_JSON``.

Started by the grader in a temporary folder that holds a copy of the student's files (first on
``sys.path``), with the course's folder after it. It runs the exercise's checks from
``lessons/grading.py``: the lesson's ``python -m tinyba2m.gradcheck`` command on the student's
module (its table goes to stdout, its records to a JSON file) and the exercise's own check, if
any (a PASS/FAIL line per row). It then writes RESULT_JSON: ``{"exercise": ..., "checks": [records]}``,
records as in ``tinyba2m/gradcheck/report.py`` (an own check's record adds its ``rows``).
Exit status 0 whatever the student's result; the grader reads the file.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shlex
import sys
import time

from ..gradcheck.__main__ import main as gradcheck_main
from ..gradcheck.__main__ import UsageError, raised_where
from ..gradcheck.report import exception_record


USAGE = "python -m tinyba2m.gradcheck: error: "


class _Tail(io.TextIOBase):
    """A stream that passes everything on and keeps the last few KiB (to read argparse's message)."""

    def __init__(self, stream, keep=4096):
        self.stream, self.keep, self.tail = stream, keep, ""

    def write(self, s):
        self.stream.write(s)
        self.tail = (self.tail + s)[-self.keep:]
        return len(s)

    def flush(self):
        self.stream.flush()


def run_gradcheck(exercise) -> list:
    """The lesson's gradcheck command on the student's module (``lessons.exercises.`` dropped)."""
    path = "gradcheck-result.json"
    argv = shlex.split(exercise.gradcheck.replace("lessons.exercises.", "")) + ["--json", path]
    print("$ python -m tinyba2m.gradcheck " + " ".join(argv[:-2]), flush=True)
    err = _Tail(sys.stderr)
    try:
        with contextlib.redirect_stderr(err):
            gradcheck_main(argv)
    except SystemExit as exc:
        said = [ln for ln in err.tail.splitlines() if ln.startswith(USAGE)]
        if exc.code == 2 and said:  # a usage error, e.g. the student's file has no such function: argparse said why
            return [exception_record(argv[1], "usage", UsageError(said[-1][len(USAGE):]))]
        return [exception_record(argv[1], "run", exc, raised_where(exc, os.path.abspath(exercise.file)))]  # sys.exit()
    with open(path) as f:
        return json.load(f)["checks"]


def run_own_check(exercise) -> dict:
    """Import the student's module and run the exercise's own check; one record with its rows."""
    code_file = os.path.abspath(exercise.file)
    name = f"{exercise.name} ({exercise.own_check.__name__})"
    print(f"$ {name}", flush=True)
    start = time.perf_counter()
    try:
        module = importlib.import_module(exercise.name)
    except (Exception, SystemExit) as exc:
        return exception_record(name, "import", exc, raised_where(exc, code_file), "own",
                                seconds=time.perf_counter() - start)
    rows = []
    try:
        for ok, text in exercise.own_check(module):
            print(f"{'PASS' if ok else 'FAIL'} {text}", flush=True)
            rows.append({"status": "PASS" if ok else "FAIL", "text": text})
    except (Exception, SystemExit) as exc:
        print(f"FAIL {type(exc).__name__}: {exc}", flush=True)
        return exception_record(name, "run", exc, raised_where(exc, code_file), "own",
                                seconds=time.perf_counter() - start)
    passed = bool(rows) and all(r["status"] == "PASS" for r in rows)
    return {"name": name, "kind": "own", "input_shapes": None, "status": "PASS" if passed else "FAIL",
            "worst_error": None, "tolerance": None, "gradients": [], "rows": rows, "exception": None,
            "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    name, result_path = argv if argv is not None else sys.argv[1:]
    from lessons.grading import EXERCISES  # the course's table: its folder is on the path
    exercise = EXERCISES[name]
    checks = []
    if exercise.gradcheck:
        checks += run_gradcheck(exercise)
    if exercise.own_check is not None:
        checks.append(run_own_check(exercise))
    with open(result_path, "w") as f:
        json.dump({"exercise": name, "checks": checks}, f, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
