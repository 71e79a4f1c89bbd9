"""One student's exercise, checked in its own subprocess with a time, memory and output limit.

The subprocess (``python -m tinyba2m.grade.child``) runs in a fresh temporary folder holding a copy
of the student's own ``*.py`` files: that folder comes first on its import path, the course's
folder second, and nothing else of the class is on it. It writes no bytecode, so the course's
folders get no ``__pycache__`` from it. It runs in a session of its own; when its time is up the
whole process group is killed (SIGKILL), and whatever it left behind is killed when it ends. On
POSIX systems it also gets an address-space limit (``Limits.memory_mb``), no core dumps and no
file larger than ``FILE_LIMIT``.

These limits protect the grader from mistakes (an endless loop, a flood of output, a runaway
allocation). They are not a sandbox: the student's code runs as you, and can read and write
whatever you can. See lessons/README.md, "For instructors", for running the grader in a container.
"""
from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass

from ..gradcheck.report import worst_error

STATUSES = ("PASS", "FAIL", "ERROR", "TIMEOUT", "MISSING")
ERROR_PHASES = ("import", "construction", "forward", "backward", "run", "usage")  # the student's code raised
FILE_LIMIT = 256 * 1024 * 1024     # bytes: the largest file a check may write (RLIMIT_FSIZE)
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Limits:
    timeout: float = 60.0            # seconds for one student x exercise, start-up included
    memory_mb: int = 4096            # address-space limit (RLIMIT_AS); 0: none
    max_output: int = 64 * 1024      # bytes of output kept: the first and the last half


@dataclass
class Grade:
    student: str
    exercise: str
    status: str                      # one of STATUSES
    worst_error: float | None        # the worst relative error over the checked gradients (None: none checked)
    message: str                     # one line: why (file:line for an ERROR)
    output: str = ""                 # what the check printed, cut to Limits.max_output
    seconds: float = 0.0


class BoundedOutput:
    """Keeps the first and the last ``limit // 2`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int):
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail: deque = deque()
        self.tail_size = 0
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail.append(chunk)
            self.tail_size += len(chunk)
            while self.tail_size - len(self.tail[0]) >= self.half:
                self.tail_size -= len(self.tail.popleft())

    def text(self) -> str:
        tail = b"".join(self.tail)[-self.half:]
        cut = self.total - len(self.head) - len(tail)
        middle = f"\n[... {cut} bytes of output cut ...]\n".encode() if cut > 0 else b""
        return (bytes(self.head) + middle + tail).decode("utf-8", errors="replace")


def _preexec(memory_mb: int):
    def limit():
        import resource
        if memory_mb > 0:
            size = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))  # no file grows past it
    return limit if os.name == "posix" else None


def _kill_group(proc) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()


def run_bounded(cmd, cwd, env, limits: Limits):
    """Run ``cmd``; return (exit status, output text, timed_out, seconds). Output (stdout and stderr
    together) is read as it comes, so a flood never fills a pipe or the memory."""
    start = time.monotonic()
    deadline = start + limits.timeout
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=(os.name == "posix"),
                            preexec_fn=_preexec(limits.memory_mb))
    out = BoundedOutput(limits.max_output)
    timed_out = False
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = proc.poll() is None
                    break
                exited = proc.poll() is not None
                if not sel.select(timeout=0 if exited else min(left, 0.2)):
                    if exited:      # gone, and nothing more to read now (a left-behind child may hold the pipe)
                        break
                    continue
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:       # end of the output: wait for the exit below
                    try:
                        proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
                    except subprocess.TimeoutExpired:
                        timed_out = True
                    break
                out.add(chunk)
    finally:                        # also on Ctrl-C: the child's own session does not get the terminal's SIGINT
        _kill_group(proc)           # on a timeout, and whatever the student's code left running
        proc.wait()
        proc.stdout.close()
    return proc.returncode, out.text(), timed_out, time.monotonic() - start


def child_env(course: str) -> dict:
    """The subprocess's environment: the course (and the tinyba2m package, if it lives elsewhere)
    on PYTHONPATH after the student's folder (the working folder), no bytecode, one BLAS thread."""
    env = dict(os.environ)
    paths = [course, PACKAGE_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(os.path.abspath(p) for p in paths))
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def grade_one(student_dir, exercise: str, course: str, limits: Limits) -> Grade:
    """Check ``<student_dir>/<exercise>.py`` with the exercise's checks (lessons/grading.py)."""
    student = os.path.basename(os.path.normpath(student_dir))
    file = os.path.join(student_dir, f"{exercise}.py")
    if not os.path.isfile(file):
        near = sorted(f for f in os.listdir(student_dir) if f.startswith(exercise.split("_")[0] + "_") and f.endswith(".py"))
        return Grade(student, exercise, "MISSING", None,
                     f"no {exercise}.py" + (f" (found {', '.join(near)}: the course's file name is needed)" if near else ""))
    with tempfile.TemporaryDirectory(prefix="tinyba2m-grade-") as work:
        for name in os.listdir(student_dir):
            if name.endswith(".py") and os.path.isfile(os.path.join(student_dir, name)):
                shutil.copyfile(os.path.join(student_dir, name), os.path.join(work, name))
        result = os.path.join(work, "grade-result.json")
        cmd = [sys.executable, "-m", "tinyba2m.grade.child", exercise, result]
        rc, output, timed_out, seconds = run_bounded(cmd, work, child_env(course), limits)
        output = output.replace(os.path.join(os.path.realpath(work), ""), "").replace(os.path.join(work, ""), "")
        checks = None
        if not timed_out:
            with contextlib.suppress(OSError, ValueError, KeyError), open(result) as f:
                checks = json.load(f)["checks"]
        try:
            status, worst, message = judge(checks, rc, timed_out, output, limits, (work, course))
        except (KeyError, TypeError, ValueError, AttributeError):   # a result file not written by the checker
            status, worst, message = "ERROR", None, "the check's result file is malformed"
    return Grade(student, exercise, status, worst, message, output, seconds)


def worst_of(checks):
    """The worst gradient error over ``checks``' records, NaN first (None if no gradient was checked)."""
    return worst_error(float(g["error"]) for r in checks for g in r["gradients"])  # float("nan") reads "nan"


def _where(exc, roots) -> str:
    """``file:line: `` of a record's exception: a file of the student's (or the course's) relative to its folder."""
    if not exc.get("file"):
        return ""
    file = os.path.realpath(exc["file"])
    root = next((r for r in map(os.path.realpath, roots) if file.startswith(r + os.sep)), None)
    return f"{os.path.relpath(file, root) if root else exc['file']}:{exc['line']}: "


def _failure(record) -> str:
    if record["exception"] is not None:       # the checker refused what the code returned (a shape, a count)
        message = record["exception"]["message"]
        return f"{record['exception']['type']}: {message.removeprefix(record['name'] + ': ')}"
    if record.get("rows"):
        bad = [r["text"] for r in record["rows"] if r["status"] != "PASS"]
        return f"{bad[0]} ({len(bad)} of {len(record['rows'])} cases failed)" if bad else "no case checked"
    bad = [g for g in record["gradients"] if g["status"] != "PASS"]
    if not bad:
        return "no gradient checked"
    fmt = lambda v: v if isinstance(v, str) else f"{v:.2e}"
    return ", ".join(f"{g['name']}={fmt(g['error'])}" for g in bad) + f" above tolerance {record['tolerance']:g}"


def judge(checks, rc, timed_out, output, limits, roots=()):
    """(status, worst error, message) of one run. A record's status is trusted only together with its
    numbers: a gradient whose error is not a finite number at or below the tolerance is a FAIL."""
    if timed_out:
        return "TIMEOUT", None, f"no result within {limits.timeout:g} s: stopped (its whole process group killed)"
    if checks is None:
        how = (f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0 and -rc in signal.valid_signals()
               else f"exit status {rc}")
        last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "")
        return "ERROR", None, f"the check process ended without a result ({how})" + (f": {last[:200]}" if last else "")
    if not checks:
        return "ERROR", None, "no check ran"
    worst = worst_of(checks)
    for r in checks:
        exc = r["exception"]
        if exc is not None and exc["phase"] == "usage":
            return "ERROR", worst, exc["message"]
        if exc is not None and exc["phase"] in ERROR_PHASES:
            return "ERROR", worst, f"{_where(exc, roots)}{exc['phase']} raised {exc['type']}: {exc['message']}"
    failed = [r for r in checks if r["status"] != "PASS" or r["exception"] is not None
              or any(not (isinstance(g["error"], (int, float)) and g["error"] <= g["tolerance"]) for g in r["gradients"])]
    if failed:
        return "FAIL", worst, "; ".join(f"{r['name']}: {_failure(r)}" for r in failed)
    return "PASS", worst, ""
