"""Machine-readable results of ``python -m tinyba2m.gradcheck``: ``--json PATH`` and ``--junit-xml PATH``.

The JSON file is ``{"tool": "tinyba2m.gradcheck", "schema_version": 1, "backend": "numpy",
"complete": true, "total": 3, "passed": 2, "failed": 1, "checks": [record, ...]}`` with one record
per check (a built-in name or a ``--target``)::

    {"name": "...", "kind": "builtin" | "target", "input_shapes": [[4, 5]] | null,
     "status": "PASS" | "FAIL", "worst_error": 1.2e-10 | "nan" | "inf" | null, "tolerance": 1e-06,
     "gradients": [{"name": "x", "shape": [4, 5], "error": 1.2e-10, "tolerance": 1e-06, "status": "PASS"}],
     "exception": null | {"phase": "backward", "type": "RuntimeError", "message": "...",
                          "file": "/path/ex03.py", "line": 12},
     "seconds": 0.01}

``input_shapes`` are the shapes the command line gave a target (null for a built-in); each
gradient's ``shape`` is the shape of the array it belongs to. The exception's phase is import,
construction, forward or backward (the target's code raised), or check (the checker refused what
the code returned: a gradient's shape or count; for a built-in: anything it raised).

The status is judged here, not taken from ``CheckResult.passed``: a check passes only when it
checked at least one gradient, raised nothing, and every error is a finite number at or below
the tolerance. A NaN or infinite error is FAIL and is written as the string ``"nan"`` / ``"inf"``
(JSON has no NaN), so every file is strict JSON. The same records become JUnit XML: one
``<testcase>`` per check, a ``<failure>`` for a gradient above the tolerance, an ``<error>`` for a
check that raised. Both files are (re)written after every check, so a run that stops on an
exception still leaves every check up to it; the JSON's ``"complete"`` is true only once the run
got to its end.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
import xml.etree.ElementTree as ET

from .checker import within, worst_of

SCHEMA_VERSION = 1


def error_value(v):
    """A relative error for JSON: the float, or "nan" / "inf" / "-inf" for a non-finite one."""
    v = float(v)
    return v if math.isfinite(v) else str(v)


def worst_error(errors):
    """The worst of ``errors`` (:func:`.checker.worst_of`: NaN if any, else inf if any, else the
    largest); None if empty."""
    errors = list(errors)
    return worst_of(errors) if errors else None


def _shape(shape):
    return None if shape is None else [int(s) for s in shape]


def result_record(result, kind="builtin", input_shapes=None, seconds=None) -> dict:
    """The record of a finished check (a :class:`~tinyba2m.gradcheck.checker.CheckResult`)."""
    tol = float(result.tolerance)
    shapes = getattr(result, "shapes", {}) or {}
    grads = [{"name": k, "shape": _shape(shapes.get(k)), "error": error_value(v), "tolerance": tol,
              "status": "PASS" if within(v, tol) else "FAIL"} for k, v in result.errors.items()]
    passed = bool(grads) and all(g["status"] == "PASS" for g in grads)
    worst = worst_error(result.errors.values())
    return {"name": result.name, "kind": kind, "input_shapes": _shapes(input_shapes),
            "status": "PASS" if passed else "FAIL",
            "worst_error": None if worst is None else error_value(worst), "tolerance": tol,
            "gradients": grads, "exception": None, "seconds": seconds}


def exception_record(name, phase, exc, where=None, kind="target", input_shapes=None, tolerance=None,
                     seconds=None) -> dict:
    """The record of a check whose code raised ``exc`` in ``phase`` (import, construction, forward,
    backward, check); ``where`` is (file, line) in the user's code, or None."""
    file, line = where if where else (None, None)
    return {"name": name, "kind": kind, "input_shapes": _shapes(input_shapes), "status": "FAIL",
            "worst_error": "inf", "tolerance": None if tolerance is None else float(tolerance),
            "gradients": [],
            "exception": {"phase": phase, "type": type(exc).__name__, "message": str(exc),
                          "file": file, "line": line},
            "seconds": seconds}


def _shapes(shapes):
    return None if shapes is None else [_shape(s) for s in shapes]


def document(records, backend_name=None, complete=True) -> dict:
    """The JSON file: counts, ``complete`` (False while checks are still to come, or when one raised
    past the checker), and the records."""
    passed = sum(r["status"] == "PASS" for r in records)
    return {"tool": "tinyba2m.gradcheck", "schema_version": SCHEMA_VERSION, "backend": backend_name,
            "complete": complete, "total": len(records), "passed": passed, "failed": len(records) - passed,
            "checks": list(records)}


def _fmt(v) -> str:
    return v if isinstance(v, str) else f"{v:.3e}"


def junit_tree(records, suite="tinyba2m.gradcheck") -> ET.ElementTree:
    """One <testsuite> with one <testcase> per record."""
    failures = sum(r["status"] == "FAIL" and r["exception"] is None for r in records)
    errors = sum(r["exception"] is not None for r in records)
    total_time = sum(r["seconds"] or 0.0 for r in records)
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(records)), failures=str(failures),
                       errors=str(errors), skipped="0", time=f"{total_time:.3f}")
    for r in records:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{r['kind']}", name=r["name"],
                           time=f"{r['seconds'] or 0.0:.3f}")
        lines = [f"{g['name']} {g['shape']}: relative error {_fmt(g['error'])} (tolerance {g['tolerance']:g}) "
                 f"{g['status']}" for g in r["gradients"]]
        exc = r["exception"]
        if exc is not None:
            where = f" (raised at {exc['file']}:{exc['line']})" if exc["file"] else ""
            msg = f"{exc['phase']} raised {exc['type']}: {exc['message']}{where}"
            ET.SubElement(tc, "error", message=msg, type=exc["type"]).text = msg
        elif r["status"] == "FAIL":
            bad = [g for g in r["gradients"] if g["status"] == "FAIL"]
            msg = (", ".join(f"{g['name']}={_fmt(g['error'])}" for g in bad) + f" above tolerance {r['tolerance']:g}"
                   if bad else "no gradient checked")
            ET.SubElement(tc, "failure", message=msg, type="GradientMismatch").text = "\n".join(lines) or msg
        if lines:
            ET.SubElement(tc, "system-out").text = "\n".join(lines)
    return ET.ElementTree(root)


def _replace(path, write) -> None:
    """Write through a temp file in the same folder, then rename: a reader never sees half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gradcheck-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, records, backend_name=None, complete=True) -> None:
    text = json.dumps(document(records, backend_name, complete), indent=1, allow_nan=False)
    _replace(path, lambda f: f.write(text.encode() + b"\n"))


def write_junit(path, records) -> None:
    tree = junit_tree(records)
    ET.indent(tree)
    _replace(path, lambda f: tree.write(f, encoding="utf-8", xml_declaration=True))


class Report:
    """The records of one command-line run, written to ``json_path`` / ``junit_path`` (either may be
    None) after every added record. With neither path it records and writes nothing."""

    def __init__(self, json_path=None, junit_path=None, backend_name=None):
        self.json_path, self.junit_path, self.backend_name = json_path, junit_path, backend_name
        self.records: list = []
        self._mark = time.perf_counter()

    def add(self, record: dict) -> None:
        """Keep ``record`` (its ``seconds``, if None: the time since the previous one) and rewrite the files."""
        now = time.perf_counter()
        if record.get("seconds") is None:
            record["seconds"] = round(now - self._mark, 6)
        self._mark = now
        if self.json_path or self.junit_path:
            self.records.append(record)
            self.write(complete=False)

    def write(self, complete=True) -> None:
        """Write both files; ``complete=False`` while more checks may follow."""
        if self.json_path:
            write_json(self.json_path, self.records, self.backend_name, complete)
        if self.junit_path:
            write_junit(self.junit_path, self.records)

    def run_builtin(self, name, case, locate=None):
        """``case()`` recorded as a built-in check. An exception is recorded (``locate(exc)``: its
        (file, line)) and the files written before it propagates to the caller."""
        self._mark = time.perf_counter()
        try:
            result = case()
        except Exception as exc:
            self.add(exception_record(name, "check", exc, locate(exc) if locate else None, kind="builtin"))
            raise
        self.add(result_record(result, "builtin"))
        return result
