"""``python -m tinyba2m.grade SUBMISSIONS`` — grade every student's exercises of the course.

SUBMISSIONS holds one folder per student; each holds that student's exercise files under the
course's names (``ex03_leaky_relu.py``, ...). Every student x exercise is checked in its own
subprocess (runner.py) with the exercise's checks from the course's ``lessons/grading.py``.
Writes ``--out`` (grades.csv: student, exercise, status, worst_error, message; status PASS, FAIL,
ERROR, TIMEOUT or MISSING) row by row, one feedback file per student with the checker's output
for each exercise, and prints a summary table. Exit status 0 once everything is graded, whatever
the grades; 2 on bad usage (no such folder, an unknown exercise, no course found).
"""
from __future__ import annotations

import argparse
import csv
import importlib
import math
import os
import pathlib
import sys

from tqdm import tqdm

from .runner import STATUSES, Limits, grade_one

EPILOG = """examples:
  python -m tinyba2m.grade submissions/                          every exercise, every student
  python -m tinyba2m.grade submissions/ --exercises ex01,ex03 --timeout 30 --out week1.csv

The course is the folder that holds lessons/ (with lessons/grading.py): by default the one beside
the tinyba2m package (a clone of the repository), else the working folder; or give --course.
Student code runs on this machine as you: the limits (time, memory, output) stop mistakes, not
attacks. To grade untrusted code, run this inside a container (see lessons/README.md)."""

SHORT = {"PASS": "PASS", "FAIL": "FAIL", "ERROR": "ERR", "TIMEOUT": "TIME", "MISSING": "-"}


class UsageError(ValueError):
    """Exit status 2, one line."""


def find_course(option):
    """The folder holding lessons/grading.py: ``--course``, else beside the package, else the working folder."""
    here = pathlib.Path(__file__).resolve().parents[2]
    candidates = [pathlib.Path(option)] if option else [here, pathlib.Path.cwd()]
    for folder in candidates:
        if (folder / "lessons" / "grading.py").is_file():
            return folder.resolve()
    if option:
        raise UsageError(f"--course {option}: no lessons/grading.py there (give the folder that holds lessons/)")
    raise UsageError(f"no course found (lessons/grading.py beside the tinyba2m package, {here}, or in the "
                     f"working folder): give --course, the folder that holds lessons/")


def load_exercises(course) -> list:
    """The exercise names of the course, in order."""
    sys.path.insert(0, str(course))
    try:
        grading = importlib.import_module("lessons.grading")
    finally:
        sys.path.remove(str(course))
    return list(grading.EXERCISES)


def pick_exercises(known, text):
    if not text:
        return list(known)
    picked = []
    for token in (t.strip() for t in text.split(",") if t.strip()):
        match = [k for k in known if k == token or k.startswith(token + "_")]
        if len(match) != 1:
            raise UsageError(f"--exercises: {token!r} {'is ambiguous' if match else 'is not an exercise'}; "
                             f"known: {', '.join(known)} (or their first part, e.g. ex03)")
        picked += [m for m in match if m not in picked]
    return picked


def find_students(folder):
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise UsageError(f"SUBMISSIONS {folder}: not a folder")
    students = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not students:
        raise UsageError(f"SUBMISSIONS {folder}: no student folders in it (one folder per student, "
                         f"holding that student's ex01_row_scale.py, ...)")
    return students


def _csv_error(v) -> str:
    """A worst error for the CSV: "" for none, "nan", "inf" (``worst_error`` gives no -inf) or ``1.234e-07``."""
    return "" if v is None else f"{v:.3e}"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def feedback_text(student, grades) -> str:
    parts = [f"Feedback for {student}\n"]
    for g in grades:
        worst = f", worst relative error {_csv_error(g.worst_error)}" if g.worst_error is not None else ""
        parts.append(f"\n== {g.exercise}: {g.status}{worst} ==\n")
        if g.message:
            parts.append(f"{g.message}\n")
        if g.output.strip():
            parts.append("\n" + g.output.rstrip() + "\n")
    return "".join(parts)


def summary_table(grades, exercises) -> str:
    by = {(g.student, g.exercise): g for g in grades}
    students = list(dict.fromkeys(g.student for g in grades))
    heads = [e.split("_")[0] for e in exercises]
    width = max([len(s) for s in students] + [7])
    lines = [f"{'student':<{width}}  " + " ".join(f"{h:>4}" for h in heads) + "  passed"]
    for s in students:
        cells = [SHORT[by[s, e].status] for e in exercises]
        n = sum(by[s, e].status == "PASS" for e in exercises)
        lines.append(f"{s:<{width}}  " + " ".join(f"{c:>4}" for c in cells) + f"  {n}/{len(exercises)}")
    counts = [sum(by[s, e].status == "PASS" for s in students) for e in exercises]
    lines.append(f"{'passed':<{width}}  " + " ".join(f"{c:>4}" for c in counts))
    lines.append("PASS  FAIL: a gradient (or case) wrong  ERR: the code raised (file:line in the CSV)  "
                 "TIME: over the time limit  -: no file")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyba2m.grade", description=(
        "Grade every student's exercises: one subprocess per student and exercise, with a time, memory "
        "and output limit. Writes a CSV, one feedback file per student, and prints a summary."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", metavar="SUBMISSIONS", help="folder with one folder per student")
    parser.add_argument("--exercises", metavar="ex01,ex03,...", help="grade only these (default: all)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="seconds for one student's exercise, start-up included (default 60)")
    parser.add_argument("--memory-mb", type=int, default=4096, metavar="MB",
                        help="address-space limit of each check in MiB where the OS allows (default 4096; 0: none)")
    parser.add_argument("--max-output-kb", type=int, default=64, metavar="KB",
                        help="output kept per check: its first and last halves (default 64)")
    parser.add_argument("--out", default="grades.csv", metavar="PATH", help="the CSV to write (default grades.csv)")
    parser.add_argument("--feedback", metavar="DIR", help="folder for <student>.txt (default: beside --out, <out>_feedback)")
    parser.add_argument("--course", metavar="DIR", help="the folder that holds lessons/ (default: see below)")
    args = parser.parse_args(argv)
    try:
        if not (args.timeout > 0 and math.isfinite(args.timeout)):
            raise UsageError(f"--timeout {args.timeout:g}: give a positive number of seconds")
        if args.memory_mb < 0 or args.max_output_kb < 1:
            raise UsageError("--memory-mb must be >= 0 and --max-output-kb >= 1")
        course = find_course(args.course)
        exercises = pick_exercises(load_exercises(course), args.exercises)
        students = find_students(args.submissions)
        out = pathlib.Path(args.out)
        feedback = pathlib.Path(args.feedback) if args.feedback else out.with_name(out.stem + "_feedback")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            feedback.mkdir(parents=True, exist_ok=True)
            out.open("a").close()
        except OSError as exc:
            raise UsageError(f"cannot write the grades ({exc})") from None
    except UsageError as exc:
        parser.error(str(exc))
    limits = Limits(args.timeout, args.memory_mb, args.max_output_kb * 1024)

    grades = []
    try:
        grade_all(students, exercises, course, limits, out, feedback, grades)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the rows graded so far are in {out}", file=sys.stderr)
        return 130
    print(summary_table(grades, exercises))
    counts = ", ".join(f"{sum(g.status == s for g in grades)} {s}" for s in STATUSES)
    print(f"\n{len(grades)} checks ({counts}); grades in {out}, feedback in {feedback}{os.sep}")
    return 0


def grade_all(students, exercises, course, limits, out, feedback, grades) -> None:
    """Grade every student x exercise into ``grades``, writing the CSV row by row and the feedback files."""
    with open(out, "w", newline="") as f, tqdm(total=len(students) * len(exercises), unit="check",
                                                desc="grading", disable=None) as bar:
        writer = csv.writer(f)
        writer.writerow(["student", "exercise", "status", "worst_error", "message"])
        for student in students:
            mine = []
            for exercise in exercises:
                bar.set_postfix_str(f"{student.name} {exercise}")
                g = grade_one(student, exercise, str(course), limits)
                mine.append(g)
                writer.writerow([g.student, g.exercise, g.status, _csv_error(g.worst_error), _one_line(g.message)])
                f.flush()
                bar.update()
            (feedback / f"{student.name}.txt").write_text(feedback_text(student.name, mine))
            grades += mine


if __name__ == "__main__":
    sys.exit(main())
